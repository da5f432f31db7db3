//! `fix`: discover -> plan -> preview -> (lock, write) -> reload -> restart with consent -> verify,
//! rolling back on any failure after writing.

use super::*;
use crate::manager::LoadState;
use crate::rollout::{FixUnit, Live, Rollout, Why};
use crate::update::{self, Maker};

/// Who made the copy at `path`: dropfix (with what it was made from), an older dropfix (what
/// it wrote), or someone else.
pub(super) fn maker<'a>(manifest: Option<&'a state::Manifest>, path: &str) -> Maker<'a> {
    match manifest {
        Some(m) => match (m.provenance(path), m.created(path)) {
            (Some(p), _) if p.source != p.path => Maker::Dropfix(p),
            (None, Some(written)) => Maker::OlderDropfix { written },
            _ => Maker::Hand,
        },
        None => Maker::Hand,
    }
}

/// A unit's plan and what the copy it writes is made from.
type Planned = (UnitPlan, Vec<state::Provenance>);

/// Plan one discovered unit; a copy in /etc/systemd/system is kept right for the vendor file
/// and systemd it now has (crate::update).
fn plan_discovered(
    root: &Root,
    dirs: &[SearchDir],
    d: &discover::Discovered,
    manifest: Option<&state::Manifest>,
    version: Option<&Version>,
    strategy: Option<Strategy>,
    replace_copy: bool,
) -> Result<Planned> {
    if let Some(copy) = update::find_copy(d, dirs, &|p| root.read(p))? {
        let facts = update::CopyFacts {
            copy: &copy,
            maker: maker(manifest, &copy.path),
        };
        if let Some(planned) = update::plan_copy(d, &facts, version, strategy, replace_copy)? {
            return Ok(planned);
        }
    }
    let p = plan::plan_unit(d, version, strategy)?;
    let copies = update::new_copy_provenance(d, &p, strategy)?;
    Ok((p, copies))
}

/// Discover and plan every unit.
/// Discover and plan one unit; `Ok(None)` for an optional unit that is absent or masked.
#[allow(clippy::too_many_arguments)]
fn plan_one(
    root: &Root,
    dirs: &[SearchDir],
    name: &UnitName,
    explicit: bool,
    version: Option<&Version>,
    strategy: Option<Strategy>,
    manifest: Option<&state::Manifest>,
    replace_copy: bool,
) -> Result<Option<Planned>> {
    if crate::effective::exec_section(name.unit_type()).is_none() {
        return Err(crate::error::unit(
            name.as_str(),
            format!(
                "a .{} unit has no MountFlags= (only services, sockets, mounts and swaps do)",
                name.unit_type()
            ),
        ));
    }
    let found = discover::discover(root, dirs, name, version.map(|v| v.major))
        .context(crate::error::Reading(name.to_string()))?;
    let d = match found {
        Ok(d) => d,
        // early-docker.service is only looked for: absent or masked, it is left alone.
        Err(Missing::NotFound | Missing::Masked(_))
            if !explicit && name.as_str() != "docker.service" =>
        {
            return Ok(None)
        }
        Err(Missing::NotFound) => {
            return Err(crate::error::unit(
                name.as_str(),
                format!(
                    "unit not found in {} (searched {})",
                    root_label(root),
                    dirs.iter()
                        .map(|d| d.path.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ))
        }
        Err(Missing::Masked(p)) => {
            return Err(crate::error::unit(
                name.as_str(),
                format!(
                "unit is masked ({p} is empty or links to /dev/null); unmask it before fixing it"
            ),
            ))
        }
    };
    // A fragment systemd cannot load: say so in its terms before planning anything.
    discover::parse_discovered(&d, version.map(|v| v.major))?;
    let p = plan_discovered(root, dirs, &d, manifest, version, strategy, replace_copy)
        .with_context(|| format!("planning {name}"))
        .context(crate::error::Reading(name.to_string()))?;
    Ok(Some(p))
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
        error: None,
    }
}

/// A unit that cannot be fixed, in the report beside the others.
fn failed_report(unit: &str, e: &ErrorReport) -> UnitReport {
    UnitReport {
        unit: unit.to_string(),
        strategy: "none".into(),
        systemd_version: None,
        systemd_version_source: None,
        mount_flags_before: String::new(),
        mount_flags_after: String::new(),
        mount_flags_source: None,
        warnings: Vec::new(),
        notes: Vec::new(),
        files: Vec::new(),
        active_state: None,
        restarted: false,
        job_result: None,
        verify: None,
        error: Some(e.clone()),
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

/// What `fix` reads before it decides.
struct Facts {
    plans: Vec<UnitPlan>,
    /// Per plan, what the copies it writes are made from.
    copies: Vec<Vec<state::Provenance>>,
    /// Units that cannot be fixed, each on its own: the others still are.
    failed: Vec<(String, ErrorReport)>,
    /// Per plan, what systemd and /proc say (None offline).
    live: Vec<Option<Live>>,
    /// `--link-ip-netns` changes.
    netns: Vec<FileChange>,
}

/// `fix`: read, decide, preview, execute, report.
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
    let mut mgr = ctx.manager(preview, &mut notes)?;
    let facts = read(ctx, args, mgr.as_deref_mut())?;
    let rollout = crate::rollout::decide_fix(&fix_units(&facts), &facts.netns);
    let mut report = preview_report(ctx, &facts, &rollout, mgr.is_some(), notes);
    // The run fails when a unit does, and says which first (each unit's own in `units`).
    report.error = facts.failed.first().map(|(_, e)| e.clone());
    let unit_failed = !facts.failed.is_empty();
    if preview {
        report.impact = execute::impact(ctx, &rollout.restart_units());
        ctx.out_fix(&report)?;
        return Ok(if unit_failed {
            1
        } else if args.check && report.changed {
            EXIT_PENDING
        } else {
            0
        });
    }
    let flags = execute::Flags {
        consent: crate::rollout::consent(args.live.yes, args.live.no_restart, ctx.tty),
        timeout: Duration::from_secs(args.live.timeout),
        yes_hint: "with --yes",
        defer_hint: "with --no-restart",
    };
    let outcome = execute::execute(ctx, mgr.as_deref_mut(), &rollout, &flags);
    finish(&mut report, &facts, &outcome);
    ctx.out_fix(&report)?;
    Ok(if unit_failed { 1 } else { outcome.exit() })
}

/// Read the files, systemd and /proc: everything the decision needs.
fn read(ctx: &Ctx, args: &FixArgs, mut mgr: Option<&mut Manager>) -> Result<Facts> {
    let root = &ctx.root;
    let explicit = !args.units.is_empty();
    let mut units = units_or_default(&args.units)?;
    let strategy = args.strategy.map(|s| match s {
        StrategyArg::DropIn => Strategy::DropIn,
        StrategyArg::FullCopy => Strategy::FullCopy,
    });
    let version = version_for(root, args.systemd_version, mgr.as_deref_mut())?;
    let dirs = discover::search_path(root)?;

    // Ask systemd first: what it has loaded decides what exists, is masked, and runs. Each
    // unit is handled on its own: one that cannot be fixed does not stop the others.
    let mut states: Vec<UnitState> = Vec::new();
    let mut failed: Vec<(String, ErrorReport)> = Vec::new();
    if let Some(m) = mgr {
        let mut keep = Vec::new();
        for u in &units {
            let st = m
                .unit(u.as_str())
                .with_context(|| format!("asking systemd about {u}"))?;
            let optional = !explicit && u.as_str() != "docker.service";
            let refused = match st.load_state {
                LoadState::Masked | LoadState::NotFound if optional => continue,
                LoadState::Masked => Some(crate::error::unit(
                    u.as_str(),
                    "unit is masked (systemd reports LoadState=masked); unmask it before fixing it",
                )),
                LoadState::NotFound if !discover::exists(root, &dirs, u.as_str())? => {
                    Some(crate::error::unit(
                        u.as_str(),
                        "unit not found (systemd reports LoadState=not-found)",
                    ))
                }
                _ => None,
            };
            if let Some(e) = refused {
                failed.push((u.to_string(), ErrorReport::from_error(&e)));
                continue;
            }
            keep.push(u.clone());
            states.push(st);
        }
        units = keep;
    }

    let manifest = state::Manifest::load(&Writer::new(root))?;
    let mut plans = Vec::new();
    let mut copies = Vec::new();
    for u in &units {
        match plan_one(
            root,
            &dirs,
            u,
            explicit,
            version.as_ref(),
            strategy,
            manifest.as_ref(),
            args.replace_copy,
        ) {
            Ok(Some((p, c))) => {
                // A unit whose override would have to be written through a symlinked
                // directory is refused on its own, before anything is written for any unit.
                let w = Writer::new(root);
                let blocked = p
                    .changes
                    .iter()
                    .find_map(|ch| w.open_dir(crate::root::parent(&ch.path), false).err());
                if let Some(e) = blocked {
                    failed.push((
                        u.to_string(),
                        ErrorReport::from_error(&crate::error::unit(u.as_str(), format!("{e:#}"))),
                    ));
                    continue;
                }
                plans.push(p);
                copies.push(c);
            }
            Ok(None) => {}
            Err(e) => failed.push((u.to_string(), ErrorReport::from_error(&e))),
        }
    }
    // One unit asked for and it cannot be fixed: that is the whole answer, one line.
    if plans.is_empty() && failed.len() == 1 && !explicit_many(&args.units) {
        let (_, e) = failed.remove(0);
        return Err(crate::error::Reported(e).into());
    }
    let mut live = Vec::new();
    for p in plans.iter_mut() {
        let st = states
            .iter()
            .find(|st| st.id == p.unit || st.names.contains(&p.unit))
            .cloned();
        if let Some(st) = &st {
            let name = UnitName::parse(&p.unit).map_err(anyhow::Error::msg)?;
            if let Ok(d) =
                discover::discover(root, &dirs, &name, version.as_ref().map(|v| v.major))?
            {
                let dropins: Vec<String> = discover::applied(&d.dropins)
                    .iter()
                    .map(|x| x.path.clone())
                    .collect();
                compare_with_systemd(root, p, st, &d.fragment.path, &dropins);
            }
        }
        live.push(st.map(|state| {
            let in_pid1_ns = verify::in_pid1_mount_ns(&ctx.proc_root, state.main_pid);
            Live { state, in_pid1_ns }
        }));
    }
    let netns = if args.link_ip_netns {
        plan_netns(root, ctx.offline)?
    } else {
        Vec::new()
    };
    Ok(Facts {
        plans,
        copies,
        failed,
        live,
        netns,
    })
}

/// More than one unit named on the command line.
fn explicit_many(units: &[String]) -> bool {
    units.len() > 1
}

fn fix_units(f: &Facts) -> Vec<FixUnit> {
    f.plans
        .iter()
        .zip(&f.live)
        .zip(&f.copies)
        .map(|((p, l), copies)| FixUnit {
            unit: p.unit.clone(),
            changes: p.changes.clone(),
            after: p.after.mount_flags,
            namespacing: p.after.namespacing.iter().map(|n| n.key.clone()).collect(),
            live: l.clone(),
            copies: copies.clone(),
        })
        .collect()
}

/// The report before anything is done: plans, diffs, and what a live run will do.
fn preview_report(
    ctx: &Ctx,
    f: &Facts,
    r: &Rollout,
    live_mode: bool,
    notes: Vec<String>,
) -> FixReport {
    let mut units: Vec<UnitReport> = f
        .plans
        .iter()
        .map(|p| unit_report(p, ctx.with_contents))
        .collect();
    for (u, (p, l)) in units.iter_mut().zip(f.plans.iter().zip(&f.live)) {
        u.active_state = l.as_ref().map(|l| l.state.active_state.to_string());
        if !p.changes.is_empty() && p.after.mount_flags != MountFlags::Unset {
            u.notes.push(format!(
                "{} will not be restarted: this override does not unset MountFlags on this systemd",
                p.unit
            ));
        }
        if r.restart
            .iter()
            .any(|x| x.unit == p.unit && x.why == Why::Deferred)
        {
            u.notes.push(format!(
                "{} still runs the configuration from before its files were fixed: it needs the restart that was left for later",
                p.unit
            ));
        }
    }
    units.extend(f.failed.iter().map(|(u, e)| failed_report(u, e)));
    let mut actions = Vec::new();
    if r.reload && (live_mode || !r.writes.is_empty()) {
        actions.push("daemon-reload".to_string());
    }
    if live_mode {
        actions.extend(r.restart.iter().map(|x| format!("restart {}", x.unit)));
    } else {
        // Offline, a preview still lists what a live run would do.
        actions.extend(
            f.plans
                .iter()
                .filter(|p| !p.changes.is_empty() && p.after.mount_flags == MountFlags::Unset)
                .map(|p| format!("restart {} if it is running", p.unit)),
        );
    }
    FixReport {
        command: "fix".into(),
        root: root_label(&ctx.root),
        dry_run: true,
        live: live_mode,
        changed: !r.is_noop(),
        units,
        files: f
            .netns
            .iter()
            .map(|c| file_report(c, ctx.with_contents))
            .collect(),
        notes,
        actions,
        pending: Vec::new(),
        reloaded: false,
        restarted: false,
        rolled_back: false,
        impact: None,
        advice: Vec::new(),
        unreachable: Vec::new(),
        error: None,
    }
}

/// Fill the report from what the executor did.
fn finish(report: &mut FixReport, f: &Facts, o: &execute::Outcome) {
    report.dry_run = false;
    report.impact = o.impact.clone();
    report.reloaded = o.reloaded;
    report.restarted = !o.restarted.is_empty();
    report.rolled_back = o.rolled_back;
    for x in &o.restarted {
        if let Some(u) = report.units.iter_mut().find(|u| u.unit == x.unit) {
            u.restarted = true;
            u.job_result = Some(x.job.describe());
            u.active_state = Some(x.active.to_string());
        }
    }
    for (unit, v) in &o.verify {
        if let Some(u) = report.units.iter_mut().find(|u| u.unit == *unit) {
            u.verify = Some(v.clone());
        }
    }
    let mut actions = Vec::new();
    if o.reloaded {
        actions.push("daemon-reload".to_string());
    }
    actions.extend(o.restarted.iter().map(|x| format!("restart {}", x.unit)));
    report.actions = actions;
    if !o.deferred.is_empty() {
        report.pending.push(format!(
            "restart {} to run it without MountFlags (this stops docker's containers unless live-restore is on); `dropfix fix --yes` does it",
            o.deferred.join(" ")
        ));
    }
    report.advice = o.advice();
    report.unreachable = o.held.clone();
    match &o.error {
        Some((_, message)) => {
            report.changed = o.written;
            report.error = Some(ErrorReport::message(message.clone()));
        }
        None if report.error.is_some() => {
            report.changed = o.written || o.reloaded || !o.restarted.is_empty();
        }
        None => {
            report.changed = o.written || o.reloaded || !o.restarted.is_empty();
            let not_running = f
                .plans
                .iter()
                .zip(&f.live)
                .filter(|(p, l)| {
                    l.as_ref().is_some_and(|l| !l.state.is_running()) && !p.changes.is_empty()
                })
                .map(|(p, _)| {
                    format!(
                        "{} is not running, so it was not started: it will start without MountFlags",
                        p.unit
                    )
                });
            report.notes.extend(not_running);
        }
    }
}
