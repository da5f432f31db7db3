//! `scan`: every service with a private mount namespace, live or from the files.

use super::*;

/// The result of `scan`.
#[derive(Debug, serde::Serialize)]
struct ScanReport {
    command: String,
    live: bool,
    scanned: usize,
    units: Vec<crate::scan::Row>,
}

pub(super) fn scan(ctx: &Ctx, args: &crate::cli::ScanArgs) -> Result<i32> {
    let root = &ctx.root;
    let (rows, scanned, live) = if ctx.offline {
        let version = version_for(root, args.systemd_version, None)?;
        let dirs = discover::search_path(root)?;
        let rule = version
            .as_ref()
            .map_or(crate::effective::EmptyAssignment::Resets, |v| {
                crate::effective::EmptyAssignment::for_version(v.major)
            });
        let major = version.as_ref().map(|v| v.major);
        let names: Vec<UnitName> = discover::Index::new(root, &dirs)
            .unit_names()?
            .iter()
            .filter_map(|n| UnitName::parse(n).ok())
            .filter(|n| n.unit_type() == "service")
            .collect();
        // Reading thousands of unit files is system calls, not CPU: one index per core, each
        // over its own share of the names, then the rows in name order.
        let cores = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = names.len().div_ceil(cores).max(256);
        let results: Vec<Result<(Vec<crate::scan::Row>, usize)>> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| {
                    let dirs = &dirs;
                    // Each thread its own handle: Root caches resolutions and is not Sync.
                    let root = root.clone();
                    s.spawn(move || -> Result<(Vec<crate::scan::Row>, usize)> {
                        let ix = discover::Index::new(&root, dirs);
                        let mut rows = Vec::new();
                        let mut scanned = 0;
                        for name in part {
                            let Ok(d) = discover::discover_in(&ix, name, major)? else {
                                continue;
                            };
                            if d.unit != *name {
                                continue; // an alias: its unit is listed under its own name
                            }
                            scanned += 1;
                            let sources = discover::parse_discovered(&d, major)
                                .with_context(|| format!("reading {name}"))?;
                            let eff = crate::effective::merge(&sources, "Service", rule);
                            rows.extend(crate::scan::from_effective(name.as_str(), &eff, major));
                        }
                        Ok((rows, scanned))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a scan thread failed")))
                })
                .collect()
        });
        let mut rows = Vec::new();
        let mut scanned = 0;
        for r in results {
            let (r, n) = r?;
            rows.extend(r);
            scanned += n;
        }
        (rows, scanned, false)
    } else {
        let mut m = ctx
            .manager(false, &mut Vec::new())?
            .ok_or_else(|| anyhow!("no service manager"))?;
        let version = version_for(root, args.systemd_version, Some(&mut *m))?;
        let units: Vec<_> = m
            .list_units()?
            .into_iter()
            .filter(|u| {
                u.name.ends_with(".service") && u.load_state == crate::manager::LoadState::Loaded
            })
            .collect();
        let paths: Vec<String> = units.iter().map(|u| u.path.clone()).collect();
        let props = m.properties_many(&paths, "org.freedesktop.systemd1.Service")?;
        let mut rows = Vec::new();
        for (u, p) in units.iter().zip(&props) {
            if let Some(p) = p {
                if let Some(r) = crate::scan::from_properties(
                    &u.name,
                    u.active_state.as_str(),
                    p,
                    version.as_ref().map(|v| v.major),
                ) {
                    rows.push(r);
                }
            }
        }
        (rows, units.len(), true)
    };
    let report = ScanReport {
        command: "scan".into(),
        live,
        scanned,
        units: rows,
    };
    match ctx.format {
        Format::Json | Format::Prometheus => print_json(&report)?,
        Format::Text => {
            let mut t = crate::scan::table(&report.units);
            t.push_str(&format!(
                "{} of {} service(s) run in a mount namespace of their own\n",
                report.units.len(),
                report.scanned
            ));
            print(&t)?
        }
    }
    Ok(0)
}
