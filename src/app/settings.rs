//! `show`, `set` and `unset`: any unit setting, with the file and line that decided it.

use super::*;

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
    let mut mgr = if ctx.offline {
        None
    } else {
        Some(Box::new(Systemd::connect()?) as Box<Manager>)
    };
    let version = version_for(root, None, mgr.as_deref_mut())?;
    let d = discover_one(root, &name, version.as_ref())?;
    let applied = discover::applied(&d.dropins);
    let sources = discover::parse_sources(&d.fragment.path, &d.fragment.data, &applied)?;
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
    let report = render::ShowReport {
        command: "show".into(),
        unit: d.unit.to_string(),
        fragment: d.fragment.path.clone(),
        live,
        need_daemon_reload: need_reload,
        settings: all,
        dropins: crate::settings::dropin_statuses(&d),
    };
    match ctx.format {
        Format::Json => print_json(&report)?,
        Format::Text => print(&render::show_text(&report, ctx.style))?,
    }
    Ok(0)
}

/// `set` and `unset`: dropfix's settings drop-in, previewed, written, reloaded, verified, and
/// with --restart restarted (with consent) and rolled back on failure.
pub(super) fn edit_settings(
    ctx: &Ctx,
    command: &str,
    name: &UnitName,
    ops: &[Op],
    dry_run: bool,
    check: bool,
    restart: &crate::cli::RestartArgs,
) -> Result<i32> {
    let root = &ctx.root;
    let preview = dry_run || check;
    if !preview && !ctx.offline {
        require_root(&format!("dropfix {command}"))?;
    }
    // Held from the first read to the last write: two sets at once never lose one's change.
    let _lock = if preview {
        None
    } else {
        Some(Lock::acquire(root)?)
    };
    let mut mgr = if ctx.offline {
        None
    } else {
        Some(Box::new(Systemd::connect()?) as Box<Manager>)
    };
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
    let applied_now = discover::applied(&d.dropins);
    let before = crate::settings::merge_all(&discover::parse_sources(
        &d.fragment.path,
        &d.fragment.data,
        &applied_now,
    )?);
    let after = crate::settings::merge_all(&plan::sources_after(&d, &changes)?);
    let value_of = |all: &[crate::settings::Setting], sec: &str, key: &str| {
        all.iter()
            .find(|s| s.section == sec && s.key == key)
            .map(|s| s.value.clone())
            .unwrap_or_default()
    };
    let mut report_settings = Vec::new();
    for op in ops {
        let (sec, key) = match op {
            Op::Set { section, key, .. } | Op::Unset { section, key } => (section, key),
        };
        let a = value_of(&after, sec, key);
        if let Op::Set { value, .. } = op {
            // A later drop-in that sets the key again would make the change silently useless.
            let last = after.iter().find(|s| s.section == *sec && s.key == *key);
            if let Some(l) = last {
                if l.source.path != path && !value.is_empty() {
                    bail!("{sec}.{key}: {}:{} sets it after dropfix's drop-in, so the change would not take effect", l.source.path, l.source.line);
                }
            }
        }
        report_settings.push(render::SettingChange {
            key: format!("{sec}.{key}"),
            before: value_of(&before, sec, key),
            after: a,
        });
    }
    let mut report = render::SetReport {
        command: command.into(),
        unit: unit.clone(),
        dry_run: preview,
        changed: !changes.is_empty(),
        files: changes
            .iter()
            .map(|c| file_report(c, ctx.with_contents))
            .collect(),
        settings: report_settings,
        reloaded: false,
        restarted: false,
        job_result: None,
        verify: Vec::new(),
        rolled_back: false,
        pending: Vec::new(),
    };
    let out = |r: &render::SetReport| match ctx.format {
        Format::Json => print_json(r),
        Format::Text => print(&render::set_text(r, ctx.style)),
    };
    if preview || changes.is_empty() {
        out(&report)?;
        return Ok(if check && report.changed {
            EXIT_PENDING
        } else {
            0
        });
    }
    let Some(mut m) = mgr else {
        let w = Writer::new(root);
        let tagged: Vec<(&str, &FileChange)> = changes.iter().map(|c| (unit.as_str(), c)).collect();
        state::apply_changes(&w, &tagged).context("writing the drop-in")?;
        out(&report)?;
        return Ok(0);
    };
    let st = m.unit(&unit)?;
    let running = is_running(&st);
    let go = if !restart.restart || !running {
        false
    } else if restart.yes {
        true
    } else if std::io::stdin().is_terminal() {
        if !ask(&format!("Restart {unit} now so the change takes effect?"))? {
            bail!("not confirmed: nothing written (leave out --restart to write and reload only)");
        }
        true
    } else {
        bail!("--restart needs consent: there is no terminal to ask on, so add --yes");
    };
    let w = Writer::new(root);
    let tagged: Vec<(&str, &FileChange)> = changes.iter().map(|c| (unit.as_str(), c)).collect();
    let applied = state::apply_changes(&w, &tagged).context("writing the drop-in")?;
    let fail = |m: &mut Manager,
                report: &mut render::SetReport,
                restarted: bool,
                why: String|
     -> Result<i32> {
        let mut msg = why;
        let units = if restarted {
            vec![unit.clone()]
        } else {
            Vec::new()
        };
        let (what, ok) = restore(m, &applied, &w, &units, restart.timeout);
        msg.push_str(&what);
        report.rolled_back = ok;
        out(report)?;
        Err(anyhow!(msg))
    };
    if let Err(e) = m.reload() {
        return fail(
            &mut *m,
            &mut report,
            false,
            format!("daemon-reload failed: {e:#}"),
        );
    }
    report.reloaded = true;
    let verify_now = |m: &mut Manager| -> Result<Vec<crate::settings::Reported>> {
        let props = m.unit_properties(&unit)?;
        Ok(after
            .iter()
            .filter(|s| {
                report
                    .settings
                    .iter()
                    .any(|c| c.key == format!("{}.{}", s.section, s.key))
            })
            .filter_map(|s| crate::settings::compare(s, &props))
            .collect())
    };
    report.verify = match verify_now(&mut *m) {
        Ok(v) => v,
        Err(e) => return fail(&mut *m, &mut report, false, format!("{e:#}")),
    };
    if let Some(bad) = report.verify.iter().find(|v| v.agrees == Some(false)) {
        let why = format!(
            "after daemon-reload systemd reports {}={}, not what the files now say",
            bad.property, bad.value
        );
        return fail(&mut *m, &mut report, false, why);
    }
    if go {
        let outcome = match m.restart(&unit, Duration::from_secs(restart.timeout)) {
            Ok(o) => o,
            Err(e) => {
                return fail(
                    &mut *m,
                    &mut report,
                    true,
                    format!("restarting {unit} failed: {e:#}"),
                )
            }
        };
        let st = match m.unit(&unit) {
            Ok(st) => st,
            Err(e) => return fail(&mut *m, &mut report, true, format!("{e:#}")),
        };
        report.restarted = true;
        report.job_result = Some(outcome_str(&outcome));
        if outcome != JobOutcome::Done || st.active_state != "active" {
            let why = format!(
                "{unit} did not come back after the restart (job {}, ActiveState={}, Result={})",
                outcome_str(&outcome),
                st.active_state,
                st.result
            );
            return fail(&mut *m, &mut report, true, why);
        }
        report.verify = match verify_now(&mut *m) {
            Ok(v) => v,
            Err(e) => return fail(&mut *m, &mut report, true, format!("{e:#}")),
        };
    } else if running {
        report.pending.push(format!(
            "restart {unit} for the change to take effect (dropfix {command} --restart)"
        ));
    }
    out(&report)?;
    Ok(0)
}
