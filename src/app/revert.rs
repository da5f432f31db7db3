//! `revert`: put back what dropfix replaced, reload, restart with consent.

use super::*;
use crate::manager::LoadState;
use crate::rollout::Live;
use crate::state::{RevertAction, Reverted};

/// `revert`: read, decide, preview, execute, report.
pub(super) fn revert(ctx: &Ctx, args: &RevertArgs) -> Result<i32> {
    let units: Vec<String> = parse_units(&args.units)?
        .iter()
        .map(|u| u.to_string())
        .collect();
    if !args.dry_run && !ctx.offline {
        require_root("dropfix revert")?;
    }
    let _lock = if args.dry_run {
        None
    } else {
        Some(Lock::acquire(&ctx.root)?)
    };
    let mut notes = Vec::new();
    let mut mgr = ctx.manager(args.dry_run, &mut notes)?;
    let (planned, restored, live) = read(ctx, &units, mgr.as_deref_mut())?;
    let rollout = crate::rollout::decide_revert(&units, &restored, !args.dry_run, &live);
    let mut report = preview_report(ctx, &planned, &rollout, notes);
    if args.dry_run {
        report.impact = execute::impact(ctx, &rollout.restart_units());
        ctx.out_revert(&report)?;
        return Ok(0);
    }
    let flags = execute::Flags {
        consent: crate::rollout::consent(args.live.yes, args.live.no_restart, ctx.tty),
        timeout: Duration::from_secs(args.live.timeout),
        yes_hint: "with --yes",
        defer_hint: "with --no-restart",
    };
    let o = execute::execute(ctx, mgr.as_deref_mut(), &rollout, &flags);
    finish(ctx, &mut report, &o);
    ctx.out_revert(&report)?;
    Ok(o.exit())
}

/// What a revert would put back, the units that restores, and the live facts about them.
type Read = (Vec<Reverted>, Vec<String>, Vec<(String, Live)>);

fn read(ctx: &Ctx, units: &[String], mgr: Option<&mut Manager>) -> Result<Read> {
    let planned = state::revert(&Writer::new(&ctx.root), units, true)?;
    // Only unit files and drop-ins call for a restart (not /run/netns or tmpfiles.d).
    let mut restored: Vec<String> = planned
        .iter()
        .filter(|r| r.action != RevertAction::Skip && r.path.starts_with("/etc/systemd/"))
        .map(|r| r.unit.clone())
        .collect();
    restored.sort();
    restored.dedup();
    let live = match mgr {
        Some(m) => live_units(ctx, m, units, &restored)?,
        None => Vec::new(),
    };
    Ok((planned, restored, live))
}

/// The report before anything is done.
fn preview_report(
    ctx: &Ctx,
    planned: &[Reverted],
    r: &crate::rollout::Rollout,
    mut notes: Vec<String>,
) -> RevertReport {
    for x in r
        .restart
        .iter()
        .filter(|x| x.why == crate::rollout::Why::Deferred)
    {
        notes.push(format!(
            "{} still runs without the MountFlags systemd now has loaded: it needs the restart an earlier revert left for later",
            x.unit
        ));
    }
    let files = file_reports(ctx, planned);
    RevertReport {
        command: "revert".into(),
        root: root_label(&ctx.root),
        dry_run: true,
        changed: !files.is_empty() || !r.restart.is_empty(),
        files,
        skipped: skipped(planned),
        notes,
        pending: Vec::new(),
        reloaded: false,
        restarted: Vec::new(),
        impact: None,
        error: None,
    }
}

/// Fill the report from what the executor did.
fn finish(ctx: &Ctx, report: &mut RevertReport, o: &execute::Outcome) {
    report.dry_run = false;
    if o.error.is_none() || o.written {
        report.files = file_reports(ctx, &o.reverted);
        report.skipped = skipped(&o.reverted);
    } else {
        report.files.clear();
    }
    report.changed = !report.files.is_empty() || !o.restarted.is_empty();
    report.reloaded = o.reloaded;
    report.restarted = o.restarted.iter().map(|x| x.unit.clone()).collect();
    report.impact = o.impact.clone();
    report.pending = o
        .deferred
        .iter()
        .map(|u| {
            format!(
                "restart {u} so it runs as the restored files say; `dropfix revert --yes` does it"
            )
        })
        .collect();
    report.error = o
        .error
        .as_ref()
        .map(|(_, m)| ErrorReport::message(m.clone()));
}

/// Live facts about the units a revert may have to restart: the ones it restores, and the
/// named (or default) ones, which may still wait for a restart an earlier revert deferred.
fn live_units(
    ctx: &Ctx,
    m: &mut Manager,
    named: &[String],
    restored: &[String],
) -> Result<Vec<(String, Live)>> {
    let mut names: Vec<String> = restored.to_vec();
    let wanted: Vec<String> = if named.is_empty() {
        DEFAULT_UNITS.iter().map(|s| s.to_string()).collect()
    } else {
        named.to_vec()
    };
    for n in wanted {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for n in names {
        let state = m
            .unit(&n)
            .with_context(|| format!("asking systemd about {n}"))?;
        if state.load_state != LoadState::Loaded {
            continue;
        }
        let in_pid1_ns = verify::in_pid1_mount_ns(&ctx.proc_root, state.main_pid);
        out.push((n, Live { state, in_pid1_ns }));
    }
    Ok(out)
}

fn file_reports(ctx: &Ctx, done: &[Reverted]) -> Vec<FileReport> {
    let text = |b: &[u8]| {
        ctx.with_contents
            .then(|| String::from_utf8_lossy(b).into_owned())
    };
    done.iter()
        .filter(|r| r.action != RevertAction::Skip)
        .map(|r| FileReport {
            path: r.path.clone(),
            action: r.action.as_str().into(),
            diff: render::diff(&r.path, &r.before, &r.after),
            before: text(&r.before),
            after: text(&r.after),
        })
        .collect()
}

fn skipped(done: &[Reverted]) -> Vec<String> {
    done.iter()
        .filter(|r| r.action == RevertAction::Skip)
        .map(|r| format!("{}: {}", r.path, r.reason.as_deref().unwrap_or("")))
        .collect()
}
