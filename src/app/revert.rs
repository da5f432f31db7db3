//! `revert`: put back what dropfix replaced, reload, restart with consent.

use super::*;
use crate::manager::LoadState;
use crate::rollout::Live;
use crate::state::{RevertAction, Reverted};

/// `revert`: read, decide, preview, execute, report.
pub(super) fn revert(ctx: &Ctx, args: &RevertArgs) -> Result<i32> {
    let root = &ctx.root;
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
        Some(Lock::acquire(root)?)
    };
    let mut notes = Vec::new();
    let mut mgr = ctx.manager(args.dry_run, &mut notes)?;
    let w = Writer::new(root);
    let planned = state::revert(&w, &units, true)?;
    // Only unit files and drop-ins call for a restart (not /run/netns or tmpfiles.d).
    let mut restored: Vec<String> = planned
        .iter()
        .filter(|r| r.action != RevertAction::Skip && r.path.starts_with("/etc/systemd/"))
        .map(|r| r.unit.clone())
        .collect();
    restored.sort();
    restored.dedup();
    let live = match mgr.as_deref_mut() {
        Some(m) => live_units(ctx, m, &units, &restored)?,
        None => Vec::new(),
    };
    let rollout = crate::rollout::decide_revert(&units, &restored, !args.dry_run, &live);
    let mut report = RevertReport {
        command: "revert".into(),
        root: root_label(root),
        dry_run: args.dry_run,
        changed: !file_reports(ctx, &planned).is_empty() || !rollout.restart.is_empty(),
        files: file_reports(ctx, &planned),
        skipped: skipped(&planned),
        notes,
        pending: Vec::new(),
        reloaded: false,
        restarted: Vec::new(),
        impact: None,
        error: None,
    };
    for r in &rollout.restart {
        if r.why == crate::rollout::Why::Deferred {
            report.notes.push(format!(
                "{} still runs without the MountFlags systemd now has loaded: it needs the restart an earlier revert left for later",
                r.unit
            ));
        }
    }
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
    if !o.reverted.is_empty() || o.written {
        report.files = file_reports(ctx, &o.reverted);
        report.skipped = skipped(&o.reverted);
    } else if o.error.is_some() {
        report.files.clear();
    }
    report.changed = !report.files.is_empty() || !o.restarted.is_empty();
    report.reloaded = o.reloaded;
    report.restarted = o.restarted.iter().map(|x| x.unit.clone()).collect();
    report.impact = o.impact.clone();
    if !o.deferred.is_empty() {
        report.pending.push(format!(
            "restart {} so it runs as the restored files say; `dropfix revert --yes` does it",
            o.deferred.join(" ")
        ));
    }
    report.error = o
        .error
        .as_ref()
        .map(|(_, m)| ErrorReport::message(m.clone()));
    ctx.out_revert(&report)?;
    Ok(o.exit())
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
