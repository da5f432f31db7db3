//! `fix`: discover -> plan -> preview -> (lock, write) -> reload -> restart with consent -> verify,
//! rolling back on any failure after writing.

use super::*;

/// Discover and plan every unit.
fn plan_all(
    root: &Root,
    dirs: &[SearchDir],
    units: &[UnitName],
    explicit: bool,
    version: Option<&Version>,
    strategy: Option<Strategy>,
) -> Result<Vec<UnitPlan>> {
    let mut plans = Vec::new();
    for name in units {
        let found = discover::discover(root, dirs, name, version.map(|v| v.major))
            .with_context(|| format!("reading {name}"))?;
        let d = match found {
            Ok(d) => d,
            // early-docker.service is only looked for: absent or masked, it is left alone.
            Err(Missing::NotFound | Missing::Masked(_))
                if !explicit && name.as_str() != "docker.service" =>
            {
                continue
            }
            Err(Missing::NotFound) => bail!(
                "{name}: unit not found in {} (searched {})",
                root_label(root),
                dirs.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(" ")
            ),
            Err(Missing::Masked(p)) => bail!(
                "{name}: unit is masked ({p} is empty or links to /dev/null); unmask it before fixing it"
            ),
        };
        let p =
            plan::plan_unit(&d, version, strategy).with_context(|| format!("planning {name}"))?;
        plans.push(p);
    }
    Ok(plans)
}

fn unit_report(p: &UnitPlan, with_contents: bool) -> UnitReport {
    UnitReport {
        unit: p.unit.clone(),
        strategy: p.strategy.map_or("none", Strategy::as_str).to_string(),
        systemd_version: p.version.as_ref().map(|v| v.major),
        systemd_version_source: p.version.as_ref().map(|v| v.source.clone()),
        mount_flags_before: p.before.mount_flags.as_str().to_string(),
        mount_flags_after: p.after.mount_flags.as_str().to_string(),
        mount_flags_source: p
            .before
            .decided_by()
            .map(|o| format!("{}:{}", o.path, o.line)),
        warnings: p.warnings.clone(),
        notes: p.notes.clone(),
        files: p
            .changes
            .iter()
            .map(|c| file_report(c, with_contents))
            .collect(),
        active_state: None,
        restarted: false,
        job_result: None,
        verify: None,
    }
}

/// What /run/netns and the tmpfiles.d line are now, and the changes `--link-ip-netns` needs.
/// Offline, an image's /run is covered by a tmpfs at boot: only the tmpfiles.d line counts.
fn plan_netns(root: &Root, offline: bool) -> Result<Vec<FileChange>> {
    use crate::root::Entry;
    let now = if offline {
        None
    } else {
        Some(match root.entry(plan::IP_NETNS)? {
            Entry::Missing => plan::NetnsDir::Missing,
            Entry::Symlink(t) => plan::NetnsDir::Link(t.to_string_lossy().into_owned()),
            Entry::Dir => {
                let names = root.list_dir(plan::IP_NETNS)?;
                if names.is_empty() {
                    plan::NetnsDir::EmptyDir
                } else {
                    plan::NetnsDir::Busy(names)
                }
            }
            Entry::File => plan::NetnsDir::Other,
        })
    };
    let tmpfiles = match root.entry(plan::TMPFILES_NETNS)? {
        Entry::File => Some(root.read(plan::TMPFILES_NETNS)?),
        _ => None,
    };
    plan::plan_ip_netns(now.as_ref(), tmpfiles.as_deref())
}

/// What systemd reports against what dropfix read; disagreements become warnings.
fn compare_with_systemd(
    root: &Root,
    p: &mut UnitPlan,
    st: &UnitState,
    fragment: &str,
    dropins: &[String],
) {
    if !st.fragment_path.is_empty() && !same_file(root, &st.fragment_path, fragment) {
        p.warnings.push(format!(
            "systemd loaded {} from {}, but the files say {fragment}: a daemon-reload is pending or a generator made the unit",
            p.unit, st.fragment_path
        ));
    }
    let mine: Vec<&String> = dropins.iter().collect();
    let theirs: Vec<&String> = st.drop_in_paths.iter().collect();
    let differs = mine.len() != theirs.len()
        || mine
            .iter()
            .zip(&theirs)
            .any(|(a, b)| !same_file(root, a, b));
    if differs {
        p.warnings.push(format!(
            "systemd applies drop-ins [{}] to {}, the files say [{}]",
            st.drop_in_paths.join(", "),
            p.unit,
            dropins.join(", ")
        ));
    }
    if let Some(bus) = st.mount_flags.and_then(MountFlags::from_bus) {
        if bus != p.before.mount_flags {
            p.warnings.push(format!(
                "systemd reports MountFlags={} for {}, the files say {}: systemd has not loaded the files on disk",
                bus.describe(),
                p.unit,
                p.before.mount_flags.describe()
            ));
        }
    }
}

pub(super) fn fix(ctx: &Ctx, args: &FixArgs) -> Result<i32> {
    let preview = args.dry_run || args.check;
    // Bad unit names are bad input, whoever runs dropfix.
    parse_units(&args.units)?;
    // Not root on a live host: say so before anything, even the lock, is touched.
    if !preview && !ctx.offline {
        require_root("dropfix fix")?;
    }
    // One dropfix at a time, from the first look to the last restart: one that waited sees
    // what the other did and has nothing left to do (no second write, reload or restart).
    let _lock = if preview {
        None
    } else {
        Some(Lock::acquire(&ctx.root)?)
    };
    let mut notes = Vec::new();
    let mgr = connect(ctx, preview, &mut notes)?;
    fix_with(ctx, args, mgr, notes)
}

/// `fix` with the lock held and systemd (when live) behind the [`ServiceManager`] seam.
fn fix_with(
    ctx: &Ctx,
    args: &FixArgs,
    mut mgr: Option<Box<Manager>>,
    global_notes: Vec<String>,
) -> Result<i32> {
    let root = &ctx.root;
    let preview = args.dry_run || args.check;
    let explicit = !args.units.is_empty();
    let mut units = units_or_default(&args.units)?;
    let strategy = args.strategy.map(|s| match s {
        StrategyArg::DropIn => Strategy::DropIn,
        StrategyArg::FullCopy => Strategy::FullCopy,
    });
    let version = version_for(root, args.systemd_version, mgr.as_deref_mut())?;
    let dirs = discover::search_path(root)?;

    // Ask systemd first: what it has loaded decides what exists, is masked, and runs.
    let mut live: Vec<UnitState> = Vec::new();
    if let Some(m) = mgr.as_mut() {
        let mut keep = Vec::new();
        for u in &units {
            let st = m
                .unit(u.as_str())
                .with_context(|| format!("asking systemd about {u}"))?;
            match st.load_state.as_str() {
                "masked" | "not-found" if !explicit && u.as_str() != "docker.service" => continue,
                "masked" => bail!("{u}: unit is masked (systemd reports LoadState=masked); unmask it before fixing it"),
                "not-found" if !discover::exists(root, &dirs, u.as_str())? => {
                    bail!("{u}: unit not found (systemd reports LoadState=not-found)")
                }
                _ => {}
            }
            keep.push(u.clone());
            live.push(st);
        }
        units = keep;
    }

    let mut plans = plan_all(root, &dirs, &units, explicit, version.as_ref(), strategy)?;
    // Per plan, what systemd reports about it (None offline).
    let mut states: Vec<Option<UnitState>> = Vec::new();
    for p in plans.iter_mut() {
        let st = live
            .iter()
            .find(|st| st.id == p.unit || st.names.contains(&p.unit))
            .cloned();
        if let Some(st) = &st {
            let found = discover::discover(
                root,
                &dirs,
                &UnitName::parse(&p.unit).map_err(anyhow::Error::msg)?,
                version.as_ref().map(|v| v.major),
            )?;
            if let Ok(d) = found {
                let dropins: Vec<String> = discover::applied(&d.dropins)
                    .iter()
                    .map(|x| x.path.clone())
                    .collect();
                compare_with_systemd(root, p, st, &d.fragment.path, &dropins);
            }
        }
        states.push(st);
    }
    let netns_changes = if args.link_ip_netns {
        plan_netns(root, ctx.offline)?
    } else {
        Vec::new()
    };
    let files_change = plans.iter().any(|p| !p.changes.is_empty()) || !netns_changes.is_empty();
    // systemd still runs an old configuration: the files are right but not loaded.
    let reload_pending = plans.iter().zip(&states).any(|(p, st)| {
        st.as_ref().is_some_and(|st| {
            st.mount_flags.and_then(MountFlags::from_bus) != Some(p.after.mount_flags)
        })
    });
    // Restart a running unit when its files change, or when it still runs with MountFlags set
    // (files fixed earlier without a restart). Never for an override that does not unset it.
    let restart_units: Vec<String> = plans
        .iter()
        .zip(&states)
        .filter(|(p, st)| {
            let Some(st) = st else { return false };
            let stale = p.after.namespacing.is_empty()
                && !verify::same_mount_ns_as_pid1(&ctx.proc_root, &p.unit, st.main_pid).ok;
            is_running(st)
                && unsets(p)
                && (!p.changes.is_empty()
                    || st.mount_flags.and_then(MountFlags::from_bus) != Some(MountFlags::Unset)
                    || stale)
        })
        .map(|(p, _)| p.unit.clone())
        .collect();
    for p in plans
        .iter_mut()
        .filter(|p| !unsets(p) && !p.changes.is_empty())
    {
        p.notes.push(format!(
            "{} will not be restarted: this override does not unset MountFlags on this systemd",
            p.unit
        ));
    }
    let live_mode = mgr.is_some();
    let mut actions = Vec::new();
    // Offline, a preview still lists what a live run would do; an offline write clears it.
    if live_mode || files_change {
        if files_change || reload_pending {
            actions.push("daemon-reload".to_string());
        }
        if live_mode {
            actions.extend(restart_units.iter().map(|u| format!("restart {u}")));
        } else {
            actions.extend(
                plans
                    .iter()
                    .filter(|p| !p.changes.is_empty() && unsets(p))
                    .map(|p| format!("restart {} if it is running", p.unit)),
            );
        }
    }
    let mut report = FixReport {
        command: "fix".into(),
        root: root_label(root),
        dry_run: preview,
        live: live_mode,
        changed: files_change || !actions.is_empty(),
        units: plans
            .iter()
            .map(|p| unit_report(p, ctx.with_contents))
            .collect(),
        files: netns_changes
            .iter()
            .map(|c| file_report(c, ctx.with_contents))
            .collect(),
        notes: global_notes,
        actions,
        pending: Vec::new(),
        reloaded: false,
        restarted: false,
        rolled_back: false,
    };
    for (u, st) in report.units.iter_mut().zip(&states) {
        u.active_state = st.as_ref().map(|s| s.active_state.clone());
    }

    if preview {
        ctx.out_fix(&report)?;
        return Ok(if args.check && report.changed {
            EXIT_PENDING
        } else {
            0
        });
    }

    let Some(mut m) = mgr else {
        // Offline: files only.
        apply_all(root, &plans, &netns_changes)?;
        report.actions.clear();
        ctx.out_fix(&report)?;
        return Ok(0);
    };

    if !report.changed {
        for (u, p) in report.units.iter_mut().zip(&plans) {
            let st = m.unit(&p.unit)?;
            u.verify = Some(verify_unit(&ctx.proc_root, p, &st));
        }
        report.actions.clear();
        ctx.out_fix(&report)?;
        return Ok(0);
    }

    let restart_ok = if restart_units.is_empty() || args.live.no_restart || args.live.yes {
        true
    } else if std::io::stdin().is_terminal() {
        if !ask(&restart_question(&restart_units))? {
            bail!("not confirmed: nothing written (use --no-restart to write and reload without restarting)");
        }
        true
    } else {
        false
    };

    let applied = if files_change {
        Some(apply_all(root, &plans, &netns_changes)?)
    } else {
        None
    };
    let w = Writer::new(root);
    let rollback = |m: &mut Manager,
                    report: &mut FixReport,
                    restarted: &[String],
                    why: String|
     -> Result<i32> {
        let mut msg = why;
        if let Some(a) = &applied {
            let (what, ok) = restore(m, a, &w, restarted, args.live.timeout);
            msg.push_str(&what);
            report.rolled_back = ok;
        }
        report.changed = applied.is_some();
        ctx.out_fix(report)?;
        Err(anyhow!(msg))
    };

    if let Err(e) = m.reload() {
        return rollback(
            &mut *m,
            &mut report,
            &[],
            format!("daemon-reload failed: {e:#}"),
        );
    }
    report.reloaded = true;
    // systemd must now report what the files say, with dropfix's files loaded.
    for p in &plans {
        let st = match m.unit(&p.unit) {
            Ok(st) => st,
            Err(e) => return rollback(&mut *m, &mut report, &[], format!("{e:#}")),
        };
        let expect = p.after.mount_flags;
        let got = st.mount_flags.and_then(MountFlags::from_bus);
        let not_loaded: Vec<&str> = p
            .changes
            .iter()
            .filter(|c| c.action != plan::Action::Remove)
            .filter(|c| {
                !same_file(root, &st.fragment_path, &c.path)
                    && !st.drop_in_paths.iter().any(|d| same_file(root, d, &c.path))
            })
            .map(|c| c.path.as_str())
            .collect();
        if got != Some(expect) || !not_loaded.is_empty() {
            let why = format!(
                "{}: after daemon-reload systemd reports MountFlags={} (expected {}){}",
                p.unit,
                got.map_or("?", |g| g.describe()),
                expect.describe(),
                if not_loaded.is_empty() {
                    String::new()
                } else {
                    format!(", and it did not load {}", not_loaded.join(", "))
                }
            );
            return rollback(&mut *m, &mut report, &[], why);
        }
    }

    if !restart_units.is_empty() && args.live.no_restart {
        report.pending.push(format!(
            "restart {} to run it without MountFlags (this stops docker's containers unless live-restore is configured)",
            restart_units.join(" ")
        ));
        report.actions = vec!["daemon-reload".into()];
        ctx.out_fix(&report)?;
        return Ok(0);
    }
    if !restart_ok {
        report
            .pending
            .push(format!("restart {}", restart_units.join(" ")));
        report.actions = vec!["daemon-reload".into()];
        ctx.out_fix(&report)?;
        bail!(
            "override written and systemd reloaded, but {} was not restarted: restarting docker stops its containers, so dropfix asks first; there is no terminal to ask on, so run `dropfix fix --yes` (or --no-restart to leave the restart for later)",
            restart_units.join(" and ")
        );
    }

    let mut restarted: Vec<String> = Vec::new();
    for u in &restart_units {
        restarted.push(u.clone());
        let outcome = match m.restart(u, Duration::from_secs(args.live.timeout)) {
            Ok(o) => o,
            Err(e) => {
                return rollback(
                    &mut *m,
                    &mut report,
                    &restarted,
                    format!("restarting {u} failed: {e:#}"),
                )
            }
        };
        let st = match m.unit(u) {
            Ok(st) => st,
            Err(e) => return rollback(&mut *m, &mut report, &restarted, format!("{e:#}")),
        };
        if let Some(r) = report.units.iter_mut().find(|r| r.unit == *u) {
            r.restarted = true;
            r.job_result = Some(outcome_str(&outcome));
            r.active_state = Some(st.active_state.clone());
        }
        report.restarted = true;
        if outcome != JobOutcome::Done || st.active_state != "active" {
            let why = format!(
                "{u} did not come back after the restart (job {}, ActiveState={}, Result={})",
                outcome_str(&outcome),
                st.active_state,
                st.result
            );
            return rollback(&mut *m, &mut report, &restarted, why);
        }
    }

    // Verify, with evidence. A failure that a warned-about sandboxing setting explains, or an
    // override that cannot unset MountFlags here (forced strategy), is reported, not undone.
    for p in &plans {
        let st = match m.unit(&p.unit) {
            Ok(st) => st,
            Err(e) => return rollback(&mut *m, &mut report, &restarted, format!("{e:#}")),
        };
        let v = verify_unit(&ctx.proc_root, p, &st);
        let explained = !p.after.namespacing.is_empty() || !unsets(p);
        if let Some(r) = report.units.iter_mut().find(|r| r.unit == p.unit) {
            r.verify = Some(v.clone());
            r.active_state = Some(st.active_state.clone());
        }
        if !v.ok && !explained {
            let failed: Vec<String> = v
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{} ({})", c.check, c.evidence))
                .collect();
            return rollback(
                &mut *m,
                &mut report,
                &restarted,
                format!("verification failed: {}", failed.join("; ")),
            );
        }
    }
    let not_running: Vec<String> = plans
        .iter()
        .zip(&states)
        .filter(|(p, st)| st.as_ref().is_some_and(|st| !is_running(st)) && !p.changes.is_empty())
        .map(|(p, _)| {
            format!(
                "{} is not running, so it was not started: it will start without MountFlags",
                p.unit
            )
        })
        .collect();
    report.notes.extend(not_running);
    report.actions = std::iter::once("daemon-reload".to_string())
        .chain(restarted.iter().map(|u| format!("restart {u}")))
        .collect();
    ctx.out_fix(&report)?;
    Ok(0)
}

/// Does the plan leave MountFlags unset? (A forced strategy may not, on some versions.)
fn unsets(p: &UnitPlan) -> bool {
    p.after.mount_flags == MountFlags::Unset
}

/// Checks after the fix: systemd's value, the process's namespace, docker's netns files.
fn verify_unit(proc_root: &Path, p: &UnitPlan, st: &UnitState) -> VerifyReport {
    let mut checks = Vec::new();
    let flags = st.mount_flags.and_then(MountFlags::from_bus);
    checks.push(Check {
        check: format!("{}: systemd reports MountFlags unset", p.unit),
        ok: flags == Some(MountFlags::Unset),
        evidence: format!(
            "Service.MountFlags={} = {}",
            st.mount_flags.map_or("?".into(), |v| v.to_string()),
            flags.map_or("unknown", |f| f.describe())
        ),
    });
    if is_running(st) {
        let mut c = verify::same_mount_ns_as_pid1(proc_root, &p.unit, st.main_pid);
        if !c.ok && !p.after.namespacing.is_empty() {
            let keys: Vec<&str> = p.after.namespacing.iter().map(|n| n.key.as_str()).collect();
            c.evidence
                .push_str(&format!("; kept apart by {}", keys.join(", ")));
        }
        checks.push(c);
        for dir in verify::NETNS_DIRS.iter().take(1) {
            checks.extend(verify::netns_entries(proc_root, dir));
        }
    }
    // A stale netns file (a sandbox of a container the restart stopped) is evidence, not a
    // failure of the fix: `ok` and the rollback decision rest on the other checks.
    VerifyReport {
        ok: checks
            .iter()
            .filter(|c| !c.check.contains("/netns/"))
            .all(|c| c.ok),
        checks,
    }
}

#[cfg(test)]
mod tests {
    //! The sequencing of a live fix against a recording fake of the service manager: which
    //! calls happen in which order, and what is on disk after a failure. What systemd really
    //! does is shown by the live tests against a real systemd (tests/live.rs).

    use super::*;
    use crate::cli::LiveArgs;
    use crate::manager::PropValue;
    use std::collections::HashMap;
    use std::fs;
    use std::sync::{Arc, Mutex};

    const DROPIN: &str = "etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";

    /// A manager that reads MountFlags from the root's files at each reload, the way systemd
    /// would, and fails the restarts it is told to fail.
    struct Fake {
        root: std::path::PathBuf,
        calls: Arc<Mutex<Vec<String>>>,
        flags: u64,
        restarts: Vec<JobOutcome>,
        fail_reload: bool,
        active: String,
    }

    impl Fake {
        fn loaded_flags(&self) -> u64 {
            if self.root.join(DROPIN).exists() {
                0
            } else {
                524_288
            }
        }
    }

    impl ServiceManager for Fake {
        fn version(&mut self) -> Result<String> {
            self.calls.lock().unwrap().push("version".into());
            Ok("252.39-1~deb12u2".into())
        }
        fn unit(&mut self, name: &str) -> Result<UnitState> {
            self.calls.lock().unwrap().push(format!("unit {name}"));
            let dropins = if self.root.join(DROPIN).exists() {
                vec![format!("/{DROPIN}")]
            } else {
                vec![]
            };
            Ok(UnitState {
                id: name.into(),
                names: vec![name.into()],
                load_state: "loaded".into(),
                active_state: self.active.clone(),
                sub_state: "running".into(),
                fragment_path: "/usr/lib/systemd/system/docker.service".into(),
                drop_in_paths: dropins,
                mount_flags: Some(self.flags),
                main_pid: 1,
                ..UnitState::default()
            })
        }
        fn reload(&mut self) -> Result<()> {
            self.calls.lock().unwrap().push("reload".into());
            if self.fail_reload {
                anyhow::bail!("Access denied");
            }
            self.flags = self.loaded_flags();
            Ok(())
        }
        fn restart(&mut self, name: &str, _: Duration) -> Result<JobOutcome> {
            self.calls.lock().unwrap().push(format!("restart {name}"));
            let o = if self.restarts.is_empty() {
                JobOutcome::Done
            } else {
                self.restarts.remove(0)
            };
            self.active = if o == JobOutcome::Done {
                "active".into()
            } else {
                "failed".into()
            };
            Ok(o)
        }
        fn unit_properties(&mut self, _: &str) -> Result<HashMap<String, PropValue>> {
            Ok(HashMap::new())
        }
    }

    fn setup(
        restarts: Vec<JobOutcome>,
        fail_reload: bool,
    ) -> (
        tempfile::TempDir,
        Ctx,
        Box<Manager>,
        Arc<Mutex<Vec<String>>>,
    ) {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("usr/lib/systemd/system");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("docker.service"),
            "[Service]\nExecStart=/usr/bin/dockerd\nMountFlags=slave\n",
        )
        .unwrap();
        // A /proc where the main process (pid 1 in the fake's answers) shares PID 1's namespace.
        let proc = t.path().join("proc");
        fs::create_dir_all(proc.join("1/ns")).unwrap();
        std::os::unix::fs::symlink("mnt:[4026531841]", proc.join("1/ns/mnt")).unwrap();
        let (ctx, m, calls) = on(t.path(), restarts, fail_reload);
        (t, ctx, m, calls)
    }

    /// A fake manager and a live context for an existing root.
    fn on(
        root: &std::path::Path,
        restarts: Vec<JobOutcome>,
        fail_reload: bool,
    ) -> (Ctx, Box<Manager>, Arc<Mutex<Vec<String>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut fake = Fake {
            root: root.to_path_buf(),
            calls: calls.clone(),
            flags: 0,
            restarts,
            fail_reload,
            active: "active".into(),
        };
        fake.flags = fake.loaded_flags();
        let ctx = Ctx {
            root: Root::new(root).unwrap(),
            offline: false,
            format: Format::Json,
            with_contents: false,
            style: Style { color: false },
            proc_root: root.join("proc"),
        };
        (ctx, Box::new(fake), calls)
    }

    fn args() -> FixArgs {
        FixArgs {
            units: vec![],
            dry_run: false,
            check: false,
            systemd_version: None,
            strategy: None,
            link_ip_netns: false,
            live: LiveArgs {
                yes: true,
                no_restart: false,
                timeout: 5,
            },
        }
    }

    fn calls(c: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        c.lock()
            .unwrap()
            .iter()
            .filter(|c| !c.starts_with("unit "))
            .cloned()
            .collect()
    }

    #[test]
    fn fix_writes_then_reloads_then_restarts_once() {
        let (t, ctx, m, c) = setup(vec![], false);
        assert_eq!(fix_with(&ctx, &args(), Some(m), vec![]).unwrap(), 0);
        assert_eq!(calls(&c), ["version", "reload", "restart docker.service"]);
        assert!(t.path().join(DROPIN).exists());
    }

    #[test]
    fn failed_restart_restores_files_reloads_and_restarts_again() {
        let (t, ctx, m, c) = setup(
            vec![JobOutcome::Failed {
                result: "failed".into(),
            }],
            false,
        );
        let e = fix_with(&ctx, &args(), Some(m), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("did not come back") && e.contains("restored the previous files"),
            "{e}"
        );
        // The second "version" is the rollback asking whether systemd is still on the bus.
        assert_eq!(
            calls(&c),
            [
                "version",
                "reload",
                "restart docker.service",
                "version",
                "reload",
                "restart docker.service"
            ]
        );
        assert!(!t.path().join(DROPIN).exists());
        assert!(!t.path().join("var/lib/dropfix").exists(), "no state left");
        assert!(
            !t.path().join("etc").exists(),
            "created directories removed"
        );
    }

    #[test]
    fn failed_reload_restores_files_and_never_restarts() {
        let (t, ctx, m, c) = setup(vec![], true);
        let e = fix_with(&ctx, &args(), Some(m), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("daemon-reload failed"), "{e}");
        assert!(!calls(&c).iter().any(|x| x.starts_with("restart")));
        assert!(!t.path().join(DROPIN).exists());
    }

    #[test]
    fn without_restart_consent_nothing_is_restarted() {
        let (t, ctx, m, c) = setup(vec![], false);
        let mut a = args();
        a.live = LiveArgs {
            yes: false,
            no_restart: true,
            timeout: 5,
        };
        assert_eq!(fix_with(&ctx, &a, Some(m), vec![]).unwrap(), 0);
        assert_eq!(calls(&c), ["version", "reload"]);
        assert!(t.path().join(DROPIN).exists());
    }

    #[test]
    fn a_fixed_host_gets_no_reload_and_no_restart() {
        let (t, ctx, m, _) = setup(vec![], false);
        assert_eq!(fix_with(&ctx, &args(), Some(m), vec![]).unwrap(), 0);
        // systemd (the fake) now runs the fixed files.
        let (ctx, m, c) = on(t.path(), vec![], false);
        assert_eq!(fix_with(&ctx, &args(), Some(m), vec![]).unwrap(), 0);
        assert_eq!(calls(&c), ["version"]);
    }
}
