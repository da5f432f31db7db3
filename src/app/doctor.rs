//! `doctor`: gather facts from the files, systemd and /proc, then let `crate::doctor` judge.

use super::*;

/// Microseconds since the epoch of a path's modification time, if it exists.
fn mtime_us(root: &Root, path: &str) -> Option<u64> {
    let m = std::fs::symlink_metadata(root.host_path(path)).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(t.as_micros()).ok()
}

/// What the files say about a unit, for the doctor.
fn file_facts(
    root: &Root,
    dirs: &[SearchDir],
    name: &UnitName,
    version: Option<&Version>,
) -> Result<Option<crate::doctor::FileFacts>> {
    let d = match discover::discover(root, dirs, name, version.map(|v| v.major))? {
        Ok(d) => d,
        Err(Missing::NotFound) => return Ok(None),
        Err(Missing::Masked(p)) => bail!("masked by {p}"),
    };
    let section = crate::effective::exec_section(d.unit.unit_type()).unwrap_or("Service");
    let applied = discover::applied(&d.dropins);
    let sources = discover::parse_discovered(&d, version.map(|v| v.major))?;
    let rule = version.map_or(crate::effective::EmptyAssignment::Resets, |v| {
        crate::effective::EmptyAssignment::for_version(v.major)
    });
    let effective = crate::effective::merge(&sources, section, rule);
    let mut newest = mtime_us(root, &d.fragment.path);
    for p in applied
        .iter()
        .map(|x| x.path.as_str())
        .chain(d.dropin_dirs.iter().map(|(p, _)| p.as_str()))
    {
        newest = newest.max(mtime_us(root, p));
    }
    let copy = copy_check(root, dirs, &d, version)?;
    Ok(Some(crate::doctor::FileFacts {
        effective,
        newest_change_us: newest,
        partial: discover::partial(&sources),
        copy,
    }))
}

/// Whether the unit's file is a copy in /etc/systemd/system, whose, and what follows.
fn copy_check(
    root: &Root,
    dirs: &[SearchDir],
    d: &discover::Discovered,
    version: Option<&Version>,
) -> Result<Option<crate::doctor::CopyCheck>> {
    use crate::doctor::CopyState;
    use crate::update::{self, Maker};
    let Some(copy) = update::find_copy(d, dirs, &|p| root.read(p))? else {
        return Ok(None);
    };
    let manifest = state::Manifest::load(&Writer::new(root))?;
    let maker = super::fix::maker(manifest.as_ref(), &copy.path);
    let facts = update::CopyFacts { copy: &copy, maker };
    let natural = plan::choose(version, None).0;
    let state = match maker {
        Maker::Hand => {
            let replaceable = if natural == Strategy::FullCopy {
                Err(vec![match version {
                    Some(v) => format!(
                        "systemd {} ignores an empty MountFlags= in a drop-in",
                        v.major
                    ),
                    None => "the systemd version is unknown".to_string(),
                }])
            } else {
                update::carried_dropin(d, &copy.path, &copy.data, &copy.vendor_path, &copy.vendor)?
                    .map(|_| ())
                    .map_err(|e| e.0)
            };
            CopyState::Hand {
                diff: render::diff(&copy.path, &copy.vendor, &copy.data),
                replaceable,
            }
        }
        _ => CopyState::Own {
            freshness: update::freshness(d, &facts)?.unwrap_or(update::Freshness::Current),
            not_needed: match (maker, version) {
                (Maker::Dropfix(p), Some(v))
                    if p.chosen == state::Chosen::Auto && natural == Strategy::DropIn =>
                {
                    Some(v.major)
                }
                _ => None,
            },
        },
    };
    Ok(Some(crate::doctor::CopyCheck {
        path: copy.path.clone(),
        vendor_path: copy.vendor_path.clone(),
        state,
    }))
}

/// Facts about /proc: namespace files, who holds them, leaked mounts.
fn host_proc_facts(
    ctx: &Ctx,
    host: &mut crate::doctor::HostFacts,
    targets: &[String],
    targets_up: &[String],
) {
    let proc = crate::inspect::Proc::new();
    host.pid1_ns = verify::mount_ns(proc.path(), 1);
    if host.pid1_ns.is_none() {
        host.unchecked.push("PID 1's mount namespace is unreadable (run as root): namespace, netns and leaked-mount checks skipped".into());
        return;
    }
    let (procs, unreadable) = proc.processes();
    if unreadable > 0 {
        host.unchecked.push(format!(
            "{unreadable} process(es) could not be read (run as root to see them all)"
        ));
    }
    let by_ns = crate::inspect::by_namespace(&procs);
    let pid1_ns = host.pid1_ns.clone().unwrap_or_default();
    // One mountinfo read per namespace.
    let mut ns_mounts: Vec<(&crate::inspect::Process, Vec<crate::inspect::Mount>)> = Vec::new();
    for (ns, members) in &by_ns {
        if *ns == pid1_ns {
            continue;
        }
        if let Some(first) = members.first() {
            if let Some(m) = proc.mounts(first.pid) {
                ns_mounts.push((first, m));
            }
        }
    }
    let pid1_points: Vec<String> = proc.mount_points(1).unwrap_or_default();
    host.ip_netns_linked = match (
        std::fs::canonicalize(proc.path().join("1/root/run/netns")),
        std::fs::canonicalize(proc.path().join("1/root/run/docker/netns")),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    // Asking a stopped docker's socket would start it (socket activation): read its files then.
    let docker_up = targets_up.iter().any(|u| u == "docker.service");
    let containers = if docker_up {
        crate::docker::lookup(&ctx.docker_sock, ctx.root.host_root())
    } else {
        crate::docker::Containers {
            list: crate::docker::containers_from_disk(ctx.root.host_root()),
            source: crate::docker::Source::Disk,
            note: None,
        }
    };
    host.netns = crate::netns::classify_dirs(proc.path(), verify::NETNS_DIRS, &containers.list);
    host.causes = netns_causes(&ctx.root, &proc, host.version.as_ref(), &host.netns);
    const DOCKER_DIRS: &[&str] = &["/var/lib/docker", "/run/docker", "/var/run/docker"];
    for (ns, members) in &by_ns {
        if *ns == pid1_ns {
            continue;
        }
        // The target units' own namespace (the MountFlags problem) and containers are not leaks.
        let Some(rep) = members.iter().find(|p| {
            p.unit.as_deref().is_none_or(|u| {
                !(targets.iter().any(|t| t == u)
                    || u.starts_with("docker-") && u.ends_with(".scope"))
            })
        }) else {
            continue;
        };
        if members.iter().any(|p| {
            p.unit
                .as_deref()
                .is_some_and(|u| targets.iter().any(|t| t == u))
        }) {
            continue;
        }
        let Some((_, mounts)) = ns_mounts.iter().find(|(p, _)| p.mnt_ns == **ns) else {
            continue;
        };
        let held: Vec<&crate::inspect::Mount> = mounts
            .iter()
            .filter(|m| {
                DOCKER_DIRS
                    .iter()
                    .any(|d| crate::inspect::under(&m.point, d))
            })
            .collect();
        let stale = held
            .iter()
            .filter(|m| !m.slave || !pid1_points.contains(&m.point))
            .count();
        if !held.is_empty() {
            host.leaks.push(crate::doctor::Leak {
                process: (*rep).clone(),
                mounts: held.len(),
                stale,
            });
        }
    }
}

/// The settings of a holder's unit, merged from its files by dropfix's reader (None: no such
/// unit file, e.g. a transient scope, or it could not be read).
fn unit_settings(
    root: &Root,
    dirs: &[SearchDir],
    unit: &str,
    version: Option<&Version>,
) -> Option<crate::effective::Effective> {
    let name = UnitName::parse(unit).ok()?;
    let major = version.map(|v| v.major);
    let d = discover::discover(root, dirs, &name, major).ok()?.ok()?;
    let section = crate::effective::exec_section(d.unit.unit_type())?;
    let sources = discover::parse_discovered(&d, major).ok()?;
    let rule = version.map_or(crate::effective::EmptyAssignment::Resets, |v| {
        crate::effective::EmptyAssignment::for_version(v.major)
    });
    Some(crate::effective::merge(&sources, section, rule))
}

/// Why each held entry is hidden: its first holder's unit settings and the propagation of /run
/// in its mount namespace.
fn netns_causes(
    root: &Root,
    proc: &crate::inspect::Proc,
    version: Option<&Version>,
    entries: &[crate::netns::Entry],
) -> std::collections::BTreeMap<String, crate::why::Cause> {
    let dirs = discover::search_path(root).unwrap_or_default();
    let mut out = std::collections::BTreeMap::new();
    for e in entries
        .iter()
        .filter(|e| e.class == crate::netns::Class::Held)
    {
        let Some(h) = e.holders.first() else {
            continue;
        };
        let facts = crate::why::HolderFacts {
            unit: h.unit.clone(),
            settings: h
                .unit
                .as_deref()
                .and_then(|u| unit_settings(root, &dirs, u, version)),
            propagation: proc
                .mounts(h.pid)
                .and_then(|m| crate::inspect::mount_holding(&m, "/run").map(|m| m.propagation)),
        };
        out.insert(e.path.clone(), crate::why::cause(&facts));
    }
    out
}

/// `doctor --netns PATH...`: the paths asked about, and nothing else.
fn explain_netns(ctx: &Ctx, paths: &[String]) -> Result<i32> {
    if ctx.offline {
        bail!("doctor --netns needs a live host (network namespaces are not in the files)");
    }
    let proc = crate::inspect::Proc::new();
    if verify::mount_ns(proc.path(), 1).is_none() {
        bail!("PID 1's mount namespace is unreadable: run doctor --netns as root");
    }
    let version = version_for(&ctx.root, None, None)?;
    let containers = crate::docker::containers_from_disk(ctx.root.host_root());
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let asked = crate::netns::classify_paths(proc.path(), &refs, &containers);
    let entries: Vec<crate::netns::Entry> = asked
        .iter()
        .filter_map(|a| match a {
            crate::netns::Asked::Entry(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let causes = netns_causes(&ctx.root, &proc, version.as_ref(), &entries);
    let d = crate::doctor::explain(&asked, &causes);
    match ctx.format {
        Format::Json => print_json(&d)?,
        Format::Text => print(&render::doctor_text(&d, ctx.style))?,
        Format::Prometheus => print(&crate::metrics::doctor(
            &d,
            &metrics_context(now_unix(), version.as_ref().map(|v| v.major), true),
        ))?,
    }
    let unanswered: Vec<&str> = d
        .host
        .iter()
        .filter(|f| f.status == crate::doctor::Status::Unchecked)
        .map(|f| f.summary.as_str())
        .collect();
    if !unanswered.is_empty() {
        eprintln!("dropfix: error: could not check: {}", unanswered.join("; "));
        return Ok(1);
    }
    Ok(if d.healthy { 0 } else { EXIT_PENDING })
}

/// When doctor runs, in seconds since the epoch (for the metrics file).
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn doctor(ctx: &Ctx, args: &crate::cli::DoctorArgs) -> Result<i32> {
    if !args.netns.is_empty() {
        return explain_netns(ctx, &args.netns);
    }
    let now = now_unix();
    let (d, host) = match gather(ctx, args) {
        Ok(x) => x,
        Err(e) => {
            // A metrics file left from an earlier run would claim a state no longer checked.
            if let (Format::Prometheus, Some(out)) = (ctx.format, &args.output) {
                let c = metrics_context(now, None, false);
                let _ = crate::apply::write_report(
                    out,
                    crate::metrics::doctor_failed(&c).as_bytes(),
                    0o644,
                );
            }
            return Err(e);
        }
    };
    let text = match ctx.format {
        Format::Json => json_text(&d)?,
        Format::Text => render::doctor_text(&d, ctx.style),
        Format::Prometheus => crate::metrics::doctor(
            &d,
            &metrics_context(
                now,
                host.version.as_ref().map(|v| v.major),
                host.pid1_ns.is_some(),
            ),
        ),
    };
    match &args.output {
        Some(out) => crate::apply::write_report(out, text.as_bytes(), 0o644)?,
        None => print(&text)?,
    }
    Ok(if d.healthy { 0 } else { EXIT_PENDING })
}

fn metrics_context(
    now_unix: u64,
    systemd_version: Option<u32>,
    netns_checked: bool,
) -> crate::metrics::Context<'static> {
    crate::metrics::Context {
        now_unix,
        systemd_version,
        netns_dirs: verify::NETNS_DIRS,
        netns_checked,
    }
}

/// Facts from the files, systemd and /proc, judged.
fn gather(
    ctx: &Ctx,
    args: &crate::cli::DoctorArgs,
) -> Result<(crate::doctor::Diagnosis, crate::doctor::HostFacts)> {
    let root = &ctx.root;
    let explicit = !args.units.is_empty();
    let names = units_or_default(&args.units)?;
    let dirs = discover::search_path(root)?;
    let mut mgr = ctx
        .manager(false, &mut Vec::new())
        .context("could not check")?;
    let version = version_for(root, None, mgr.as_deref_mut())?;
    let mut host = crate::doctor::HostFacts {
        version: version.clone(),
        ..crate::doctor::HostFacts::default()
    };
    let mut facts = Vec::new();
    for name in &names {
        let bus = match mgr.as_mut() {
            Some(m) => Some(
                m.unit(name.as_str())
                    .with_context(|| format!("asking systemd about {name}"))?,
            ),
            None => None,
        };
        let files = file_facts(root, &dirs, name, version.as_ref());
        let not_there = bus
            .as_ref()
            .is_some_and(|b| b.load_state == crate::manager::LoadState::NotFound)
            || (bus.is_none() && matches!(files, Ok(None)));
        if not_there {
            if explicit || name.as_str() == "docker.service" {
                bail!("could not check {name}: unit not found");
            }
            continue;
        }
        let main_ns = bus
            .as_ref()
            .filter(|b| b.main_pid != 0)
            .and_then(|b| verify::mount_ns(&ctx.proc_root, b.main_pid));
        let (files, files_error) = match files {
            Ok(Some(f)) => (Some(f), None),
            Ok(None) => (None, Some("no unit file found".to_string())),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        facts.push(crate::doctor::UnitFacts {
            unit: name.to_string(),
            files,
            files_error,
            bus,
            main_ns,
        });
    }
    if let Some(m) = mgr.as_mut() {
        // Without a load time that moves with every daemon-reload the file times are not
        // compared (NeedDaemonReload and values still are).
        host.loaded_at_us = m.units_loaded_at();
        let targets: Vec<String> = facts.iter().map(|f| f.unit.clone()).collect();
        let up: Vec<String> = facts
            .iter()
            .filter(|f| f.bus.as_ref().is_some_and(|b| b.is_running()))
            .map(|f| f.unit.clone())
            .collect();
        host_proc_facts(ctx, &mut host, &targets, &up);
    } else {
        host.unchecked
            .push("offline (--root): process, namespace and netns checks need a live host".into());
    }
    let d = crate::doctor::diagnose(&facts, &host);
    Ok((d, host))
}
