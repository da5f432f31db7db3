//! `show`, `set` and `unset`: any unit setting, with the file and line that decided it.

use super::*;
use crate::rollout::Rollout;

pub(super) fn show(ctx: &Ctx, args: &crate::cli::ShowArgs) -> Result<i32> {
    let root = &ctx.root;
    let name = one_unit(&args.unit)?;
    // Bad key names are bad input, before anything else.
    let ty = name.unit_type().to_string();
    let mut wanted: Vec<(Option<String>, String)> = Vec::new();
    for k in &args.keys {
        let (sec, key) = match k.split_once('.') {
            Some((s, k)) => (Some(s.to_string()), k.to_string()),
            None => (None, k.clone()),
        };
        let known = match &sec {
            Some(s) => crate::directives::known(&ty, s, &key),
            None => crate::directives::sections(&ty)
                .iter()
                .any(|s| crate::directives::known(&ty, s, &key)),
        };
        if !known {
            bail!("{k}: systemd knows no such setting for a .{ty} unit");
        }
        wanted.push((sec, key));
    }
    let mut mgr = ctx.manager(false, &mut Vec::new())?;
    let version = version_for(root, None, mgr.as_deref_mut())?;
    let d = discover_one(root, &name, version.as_ref())?;
    let sources = discover::parse_discovered(&d, version.as_ref().map(|v| v.major))?;
    let partial = discover::partial(&sources);
    let mut all = crate::settings::merge_all(&sources);
    if !wanted.is_empty() {
        all.retain(|s| {
            wanted
                .iter()
                .any(|(sec, k)| *k == s.key && sec.as_ref().is_none_or(|x| *x == s.section))
        });
    }
    let mut need_reload = false;
    let live = !ctx.offline;
    if let Some(m) = mgr.as_mut() {
        let st = m.unit(d.unit.as_str())?;
        need_reload = st.need_daemon_reload;
        let props = m.unit_properties(d.unit.as_str())?;
        for s in all.iter_mut() {
            s.systemd = crate::settings::compare(s, &props);
        }
        // Keys asked for that no file sets: systemd's default, when it exposes one.
        for (sec, key) in &wanted {
            if all.iter().any(|s| s.key == *key) {
                continue;
            }
            let mut s = crate::settings::Setting {
                section: sec.clone().unwrap_or_default(),
                key: key.clone(),
                value: String::new(),
                values: Vec::new(),
                source: crate::settings::Contribution {
                    value: String::new(),
                    path: "(not set in any file)".into(),
                    line: 0,
                },
                overridden: Vec::new(),
                systemd: None,
            };
            s.systemd = crate::settings::compare(&s, &props).map(|mut r| {
                r.agrees = None;
                r
            });
            all.push(s);
        }
    }
    let mut dropins = crate::settings::dropin_statuses(&d);
    for x in dropins.iter_mut() {
        if let Some(p) = partial.iter().find(|p| p.path == x.path) {
            x.status = "partial".into();
            x.reason = Some(format!(
                "line {}: {}: systemd applies the lines before and skips the rest",
                p.line, p.reason
            ));
        }
    }
    let mut names = vec![d.unit.to_string()];
    names.extend(d.aliases.iter().cloned());
    let report = render::ShowReport {
        command: "show".into(),
        unit: d.unit.to_string(),
        names,
        fragment: d.fragment.path.clone(),
        live,
        need_daemon_reload: need_reload,
        warnings: partial.iter().map(|p| p.to_string()).collect(),
        settings: all,
        dropins,
    };
    match ctx.format {
        Format::Json | Format::Prometheus => print_json(&report)?,
        Format::Text => print(&render::show_text(&report, ctx.style))?,
    }
    Ok(0)
}

/// What `set` and `unset` read before they decide.
struct SettingsFacts {
    unit: String,
    /// The change to dropfix's settings drop-in (none, or one file).
    changes: Vec<FileChange>,
    /// Each key asked for, before and after.
    report: Vec<render::SettingChange>,
    /// The settings as the files will say, for the keys asked for.
    expect: Vec<crate::settings::Setting>,
    /// systemd's view of the unit (None offline).
    live: Option<crate::rollout::Live>,
    /// When dropfix's settings drop-in last changed (µs since the epoch), if it exists.
    changed_earlier: Option<u64>,
    /// Drop-ins systemd reads only in part.
    warnings: Vec<String>,
}

/// `set` and `unset`: read, decide, preview, execute, report. dropfix's settings drop-in is
/// written, reloaded and verified; with --restart (and consent) the unit is restarted, and
/// a failure puts the previous drop-in back.
pub(super) fn edit_settings(
    ctx: &Ctx,
    command: &str,
    name: &UnitName,
    ops: &[Op],
    dry_run: bool,
    check: bool,
    restart: &crate::cli::RestartArgs,
) -> Result<i32> {
    let preview = dry_run || check;
    if !preview && !ctx.offline {
        require_root(&format!("dropfix {command}"))?;
    }
    // Held from the first read to the last write: two sets at once never lose one's change.
    let _lock = if preview {
        None
    } else {
        Some(Lock::acquire(&ctx.root)?)
    };
    let mut mgr = ctx.manager(false, &mut Vec::new())?;
    let f = read_settings(ctx, command, name, ops, mgr.as_deref_mut())?;
    let rollout = crate::rollout::decide_settings(
        &f.unit,
        f.changes.clone(),
        f.expect.clone(),
        f.live.as_ref(),
        f.changed_earlier,
    );
    let mut report = settings_report(ctx, command, &f, &rollout, preview, restart.restart);
    if preview || !report.changed {
        ctx.out_set(&report)?;
        return Ok(if check && report.changed {
            EXIT_PENDING
        } else {
            0
        });
    }
    let flags = execute::Flags {
        consent: crate::rollout::consent(restart.yes, !restart.restart, ctx.tty),
        timeout: Duration::from_secs(restart.timeout),
        yes_hint: "with --yes",
        defer_hint: "without --restart",
    };
    let o = execute::execute(ctx, mgr.as_deref_mut(), &rollout, &flags);
    finish_settings(&mut report, command, &o);
    ctx.out_set(&report)?;
    Ok(o.exit())
}

/// Read the unit and plan the change to dropfix's settings drop-in.
fn read_settings(
    ctx: &Ctx,
    command: &str,
    name: &UnitName,
    ops: &[Op],
    mut mgr: Option<&mut Manager>,
) -> Result<SettingsFacts> {
    let root = &ctx.root;
    let version = version_for(root, None, mgr.as_deref_mut())?;
    if let Some(v) = version.as_ref().filter(|v| {
        crate::effective::EmptyAssignment::for_version(v.major)
            == crate::effective::EmptyAssignment::Ignored
    }) {
        let empty_mf = ops.iter().any(
            |o| matches!(o, Op::Set { key, value, .. } if key == "MountFlags" && value.is_empty()),
        );
        if empty_mf {
            bail!("Service.MountFlags=: systemd {} ignores an empty MountFlags= (229 to 232 do); use dropfix fix, which copies the unit instead", v.major);
        }
    }
    let d = discover_one(root, name, version.as_ref())?;
    let unit = d.unit.to_string();
    let dir = plan::own_dropin_dir(&unit);
    // dropfix's settings drop-in: the one it wrote earlier, or a new late-sorting name.
    let existing = d.dropins.iter().find(|x| {
        crate::root::parent(&x.path) == dir
            && x.basename().ends_with(crate::settings::SETTINGS_DROPIN)
            && plan::is_generated(&x.data)
    });
    let path = match existing {
        Some(x) => x.path.clone(),
        None => {
            let others: Vec<&str> = d.dropins.iter().map(|x| x.basename()).collect();
            crate::root::join(
                &dir,
                &plan::late_name(crate::settings::SETTINGS_DROPIN, &others),
            )
        }
    };
    let header = plan::settings_header(&unit);
    let old = existing.map(|x| x.data.clone());
    let new = crate::settings::edit_own(old.as_deref(), &header, ops);
    let change = match (&old, &new) {
        (Some(o), Some(n)) if o == n.as_bytes() => None,
        (None, None) => None,
        (Some(o), None) => Some(plan::FileChange {
            path: path.clone(),
            action: plan::Action::Remove,
            old: o.clone(),
            new: Vec::new(),
            purpose: "no settings left".into(),
            link: None,
        }),
        (o, Some(n)) => Some(plan::FileChange {
            path: path.clone(),
            action: if o.is_some() {
                plan::Action::Replace
            } else {
                plan::Action::Create
            },
            old: o.clone().unwrap_or_default(),
            new: n.clone().into_bytes(),
            purpose: format!("dropfix {command}"),
            link: None,
        }),
    };
    let changes: Vec<plan::FileChange> = change.into_iter().collect();
    let before_sources = discover::parse_discovered(&d, version.as_ref().map(|v| v.major))?;
    let warnings: Vec<String> = discover::partial(&before_sources)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let before = crate::settings::merge_all(&before_sources);
    let major = version.as_ref().map(|v| v.major);
    let after = crate::settings::merge_all(&plan::sources_after(&d, &changes, major)?);
    let value_of = |all: &[crate::settings::Setting], sec: &str, key: &str| {
        all.iter()
            .find(|s| s.section == sec && s.key == key)
            .map(|s| s.value.clone())
            .unwrap_or_default()
    };
    let mut report = Vec::new();
    for op in ops {
        let (sec, key) = match op {
            Op::Set { section, key, .. } | Op::Unset { section, key } => (section, key),
        };
        if let Op::Set { value, .. } = op {
            // A later drop-in that sets the key again would make the change silently useless.
            let last = after.iter().find(|s| s.section == *sec && s.key == *key);
            if let Some(l) = last {
                if l.source.path != path && !value.is_empty() {
                    bail!("{sec}.{key}: {}:{} sets it after dropfix's drop-in, so the change would not take effect", l.source.path, l.source.line);
                }
            }
        }
        report.push(render::SettingChange {
            key: format!("{sec}.{key}"),
            before: value_of(&before, sec, key),
            after: value_of(&after, sec, key),
        });
    }
    let expect: Vec<crate::settings::Setting> = after
        .into_iter()
        .filter(|s| {
            report
                .iter()
                .any(|c| c.key == format!("{}.{}", s.section, s.key))
        })
        .collect();
    // What systemd runs now, and since when: a unit started before dropfix's drop-in last
    // changed still waits for a restart.
    let live = match mgr {
        Some(m) => {
            let state = m.unit(&unit)?;
            let in_pid1_ns = verify::in_pid1_mount_ns(&ctx.proc_root, state.main_pid);
            Some(crate::rollout::Live { state, in_pid1_ns })
        }
        None => None,
    };
    let changed_earlier = existing.and_then(|x| mtime_us(root, &x.path));
    Ok(SettingsFacts {
        unit,
        changes,
        report,
        expect,
        live,
        changed_earlier,
        warnings,
    })
}

/// The report before anything is done.
fn settings_report(
    ctx: &Ctx,
    command: &str,
    f: &SettingsFacts,
    r: &Rollout,
    preview: bool,
    restart: bool,
) -> render::SetReport {
    let mut report = render::SetReport {
        command: command.into(),
        unit: f.unit.clone(),
        dry_run: preview,
        changed: !r.is_noop() && (!r.writes.is_empty() || restart),
        files: f
            .changes
            .iter()
            .map(|c| file_report(c, ctx.with_contents))
            .collect(),
        settings: f.report.clone(),
        warnings: f.warnings.clone(),
        reloaded: false,
        restarted: false,
        job_result: None,
        verify: Vec::new(),
        rolled_back: false,
        pending: Vec::new(),
        impact: None,
        error: None,
    };
    if let Some(x) = r.restart.first() {
        if restart {
            report.impact = execute::impact(ctx, &r.restart_units());
        } else {
            report.pending.push(format!(
                "restart {} for the change to take effect (dropfix {command} --restart)",
                x.unit
            ));
        }
    }
    report
}

/// Fill the report from what the executor did.
fn finish_settings(report: &mut render::SetReport, command: &str, o: &execute::Outcome) {
    report.dry_run = false;
    report.changed = o.written || !o.restarted.is_empty();
    report.reloaded = o.reloaded;
    report.restarted = !o.restarted.is_empty();
    report.job_result = o.restarted.first().map(|x| x.job.describe());
    report.verify = o.settings.clone();
    report.rolled_back = o.rolled_back;
    report.impact = o.impact.clone();
    report.pending = o
        .deferred
        .iter()
        .map(|u| format!("restart {u} for the change to take effect (dropfix {command} --restart)"))
        .collect();
    report.error = o
        .error
        .as_ref()
        .map(|(_, m)| ErrorReport::message(m.clone()));
}

/// Microseconds since the epoch of a path's modification time, if it exists.
pub(super) fn mtime_us(root: &Root, path: &str) -> Option<u64> {
    let m = std::fs::symlink_metadata(root.host_path(path)).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(t.as_micros()).ok()
}
