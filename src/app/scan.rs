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
        let ix = discover::Index::new(root, &dirs);
        let mut rows = Vec::new();
        let mut scanned = 0;
        let rule = version
            .as_ref()
            .map_or(crate::effective::EmptyAssignment::Resets, |v| {
                crate::effective::EmptyAssignment::for_version(v.major)
            });
        for n in ix.unit_names()? {
            let Ok(name) = UnitName::parse(&n) else {
                continue;
            };
            if name.unit_type() != "service" {
                continue;
            }
            let Ok(d) = discover::discover_in(&ix, &name, version.as_ref().map(|v| v.major))?
            else {
                continue;
            };
            if d.unit != name {
                continue; // an alias: its unit is listed under its own name
            }
            scanned += 1;
            let applied = discover::applied(&d.dropins);
            let sources = discover::parse_sources(&d.fragment.path, &d.fragment.data, &applied)
                .with_context(|| format!("reading {n}"))?;
            let eff = crate::effective::merge(&sources, "Service", rule);
            if let Some(r) =
                crate::scan::from_effective(&n, &eff, version.as_ref().map(|v| v.major))
            {
                rows.push(r);
            }
        }
        (rows, scanned, false)
    } else {
        let mut m = Systemd::connect()?;
        let version = version_for(root, args.systemd_version, Some(&mut m))?;
        let units: Vec<_> = m
            .list_units()?
            .into_iter()
            .filter(|u| u.name.ends_with(".service") && u.load_state == "loaded")
            .collect();
        let paths: Vec<String> = units.iter().map(|u| u.path.clone()).collect();
        let props = m.properties_many(&paths, "org.freedesktop.systemd1.Service")?;
        let mut rows = Vec::new();
        for (u, p) in units.iter().zip(&props) {
            if let Some(p) = p {
                if let Some(r) = crate::scan::from_properties(
                    &u.name,
                    &u.active_state,
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
        Format::Json => print_json(&report)?,
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
