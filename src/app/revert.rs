//! `revert`: put back what dropfix replaced, reload, restart with consent.

use super::*;

pub(super) fn revert(ctx: &Ctx, args: &RevertArgs) -> Result<i32> {
    let root = &ctx.root;
    let units: Vec<String> = parse_units(&args.units)?
        .iter()
        .map(|u| u.to_string())
        .collect();
    let w = Writer::new(root);
    if !args.dry_run && !ctx.offline {
        require_root("dropfix revert")?;
    }
    let _lock = if args.dry_run {
        None
    } else {
        Some(Lock::acquire(root)?)
    };
    let mut notes = Vec::new();
    let mut mgr = connect(ctx, args.dry_run, &mut notes)?;
    // What revert will do, before doing it: consent to restart is asked first, as for fix.
    let planned = state::revert(&w, &units, true)?;
    // Only unit files and drop-ins call for a restart (not /run/netns or tmpfiles.d).
    let mut touched: Vec<String> = planned
        .iter()
        .filter(|r| r.action != "skip" && r.path.starts_with("/etc/systemd/"))
        .map(|r| r.unit.clone())
        .collect();
    touched.sort();
    touched.dedup();
    let mut running = Vec::new();
    if let Some(m) = mgr.as_mut() {
        for u in &touched {
            if is_running(&m.unit(u)?) {
                running.push(u.clone());
            }
        }
    }
    let consent = if args.dry_run || running.is_empty() || args.live.no_restart {
        false
    } else if args.live.yes {
        true
    } else if std::io::stdin().is_terminal() {
        if !ask(&restart_question(&running))? {
            bail!("not confirmed: nothing restored (use --no-restart to restore and reload without restarting)");
        }
        true
    } else {
        false
    };
    let done = if args.dry_run {
        planned
    } else {
        state::revert(&w, &units, false)?
    };
    let files: Vec<FileReport> = done
        .iter()
        .filter(|r| r.action != "skip")
        .map(|r| FileReport {
            path: r.path.clone(),
            action: r.action.clone(),
            diff: render::diff(&r.path, &r.before, &r.after),
            before: ctx
                .with_contents
                .then(|| String::from_utf8_lossy(&r.before).into_owned()),
            after: ctx
                .with_contents
                .then(|| String::from_utf8_lossy(&r.after).into_owned()),
        })
        .collect();
    let skipped: Vec<String> = done
        .iter()
        .filter(|r| r.action == "skip")
        .map(|r| format!("{}: {}", r.path, r.reason.as_deref().unwrap_or("")))
        .collect();
    let mut report = RevertReport {
        command: "revert".into(),
        root: root_label(root),
        dry_run: args.dry_run,
        changed: !files.is_empty(),
        files,
        skipped,
        notes,
        pending: Vec::new(),
        reloaded: false,
        restarted: Vec::new(),
    };
    let Some(m) = mgr.as_mut() else {
        ctx.out_revert(&report)?;
        return Ok(0);
    };
    if args.dry_run || !report.changed {
        ctx.out_revert(&report)?;
        return Ok(0);
    }
    m.reload()
        .context("files restored, but daemon-reload failed")?;
    report.reloaded = true;
    if !running.is_empty() && !consent {
        report
            .pending
            .push(format!("restart {}", running.join(" ")));
        ctx.out_revert(&report)?;
        if args.live.no_restart {
            return Ok(0);
        }
        bail!(
            "files restored and systemd reloaded, but {} was not restarted: restarting docker stops its containers, so dropfix asks first; there is no terminal to ask on, so run `dropfix revert --yes` (or restart it yourself)",
            running.join(" and ")
        );
    }
    for u in &running {
        let o = m.restart(u, Duration::from_secs(args.live.timeout))?;
        let st = m.unit(u)?;
        if o != JobOutcome::Done || st.active_state != "active" {
            ctx.out_revert(&report)?;
            bail!(
                "{u}: restart after revert gave {} (ActiveState={})",
                outcome_str(&o),
                st.active_state
            );
        }
        report.restarted.push(u.clone());
    }
    ctx.out_revert(&report)?;
    Ok(0)
}
