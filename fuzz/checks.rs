//! The properties the fuzz targets check, shared with tests/hardening_input.rs, which replays
//! every input kept in tests/fuzz_inputs/ through them.
#![allow(dead_code)]

use dropfix::discover::{self, Discovered, DropIn, Fragment, Link, SearchDir, SEARCH_PATH};
use dropfix::plan::{self, Action, Strategy};
use dropfix::root::parent;
use dropfix::syntax;
use dropfix::unitname::UnitName;
use dropfix::version::Version;
use std::collections::BTreeMap;

fn rejoin(lines: &[syntax::RawLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l.text);
        out.extend_from_slice(&l.end);
    }
    out
}

/// The parser on arbitrary bytes: no panic, a byte-exact round trip, and commenting out
/// MountFlags leaves a file that still parses with no MountFlags in that section.
pub fn parse(data: &[u8]) {
    assert_eq!(
        rejoin(&syntax::split_lines(data)),
        data,
        "split_lines loses bytes"
    );
    let file = match syntax::parse(data) {
        Ok(f) => f,
        Err((partial, e)) => {
            assert!(e.line >= 1 && e.line <= partial.line_count.max(1), "{e}");
            assert_eq!(syntax::comment_out(&partial, &[], "#"), data);
            return;
        }
    };
    assert_eq!(
        syntax::comment_out(&file, &[], "#"),
        data,
        "rewrite is not byte-exact"
    );
    for a in &file.assignments {
        assert!(!a.key.is_empty());
        assert!(a.span.start < a.span.end && a.span.end <= file.line_count);
        assert_eq!(a.line, a.span.start + 1);
    }
    let mut sections: Vec<&str> = file
        .assignments
        .iter()
        .filter(|a| a.key == "MountFlags")
        .map(|a| a.section.as_str())
        .collect();
    sections.sort_unstable();
    sections.dedup();
    for section in sections {
        let spans: Vec<_> = file
            .assignments
            .iter()
            .filter(|a| a.section == section && a.key == "MountFlags")
            .map(|a| a.span.clone())
            .collect();
        let out = syntax::comment_out(&file, &spans, "# dropfix: MountFlags disabled below");
        match syntax::parse(&out) {
            Ok(again) => assert!(
                !again
                    .assignments
                    .iter()
                    .any(|a| a.section == section && a.key == "MountFlags"),
                "MountFlags survives commenting out in [{section}]"
            ),
            Err((_, e)) => panic!("commenting out MountFlags broke the file: {e}"),
        }
    }
}

const UNIT: &str = "docker.service";
const FRAGMENT_DIRS: &[&str] = &[
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
];
const NAMES: &[&str] = &[
    "10-a.conf",
    "99-slave.conf",
    "zz-dropfix-mountflags.conf",
    "zzz-later.conf",
    "zzzz-dropfix-mountflags.conf",
    "50-x.conf",
    "~z.conf",
    "override.conf",
];
const VERSIONS: &[Option<u32>] = &[
    None,
    Some(219),
    Some(229),
    Some(231),
    Some(232),
    Some(233),
    Some(239),
    Some(244),
    Some(252),
];

fn dirs() -> Vec<SearchDir> {
    SEARCH_PATH
        .iter()
        .enumerate()
        .filter(|(_, p)| **p != "/lib/systemd/system")
        .map(|(rank, p)| SearchDir {
            path: p.to_string(),
            rank,
        })
        .collect()
}

/// What systemd would find in `files` for docker.service, or None when it is masked or missing.
fn discover_in(files: &BTreeMap<String, Vec<u8>>, version: Option<u32>) -> Option<Discovered> {
    let dirs = dirs();
    let unit = UnitName::parse(UNIT).ok()?;
    let (rank, path, data) = dirs.iter().find_map(|d| {
        let p = format!("{}/{UNIT}", d.path);
        files.get(&p).map(|data| (d.rank, p, data.clone()))
    })?;
    if data.is_empty() {
        return None;
    }
    let dropin_dirs = discover::dropin_dirs(&dirs, &unit, &[], version);
    let mut dropins = Vec::new();
    for (order, (dir, rank)) in dropin_dirs.iter().enumerate() {
        for (p, data) in files.range(format!("{dir}/")..) {
            if !p.starts_with(&format!("{dir}/")) {
                break;
            }
            let name = &p[dir.len() + 1..];
            if parent(p) != dir || !name.ends_with(".conf") || discover::hidden_or_backup(name) {
                continue;
            }
            dropins.push(DropIn {
                path: p.clone(),
                rank: *rank,
                order,
                masked: data.is_empty(),
                data: data.clone(),
            });
        }
    }
    Some(Discovered {
        unit,
        aliases: Vec::new(),
        fragment: Fragment {
            path,
            rank,
            link: Link::None,
            data,
            shadows: Vec::new(),
        },
        dropin_dirs,
        dropins,
        skipped: Vec::new(),
    })
}

/// The planner on an in-memory tree built from arbitrary bytes: no panic, only
/// administrator paths written, and planning the planned tree again finds nothing to do.
pub fn plan(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let version = VERSIONS[data[0] as usize % VERSIONS.len()];
    let forced = match data[1] % 4 {
        1 => Some(Strategy::DropIn),
        2 => Some(Strategy::FullCopy),
        _ => None,
    };
    let fragment_dir = FRAGMENT_DIRS[data[2] as usize % FRAGMENT_DIRS.len()];
    let dirs = dirs();
    let unit = UnitName::parse(UNIT).expect("a valid name");
    let all_dropin_dirs = discover::dropin_dirs(&dirs, &unit, &[], None);
    // Segments split at 0xFE: the fragment first, then drop-ins whose first byte picks the
    // directory and the name.
    let mut files = BTreeMap::new();
    for (i, seg) in data[3..].split(|&b| b == 0xFE).enumerate() {
        if i == 0 {
            files.insert(format!("{fragment_dir}/{UNIT}"), seg.to_vec());
            continue;
        }
        let Some((&sel, body)) = seg.split_first() else {
            continue;
        };
        let (dir, _) = &all_dropin_dirs[(sel >> 3) as usize % all_dropin_dirs.len()];
        let name = NAMES[(sel & 7) as usize];
        files.insert(format!("{dir}/{name}"), body.to_vec());
    }
    let Some(found) = discover_in(&files, version) else {
        return;
    };
    let v = version.map(|major| Version {
        major,
        source: "fuzz".into(),
    });
    let Ok(p) = plan::plan_unit(&found, v.as_ref(), forced) else {
        return;
    };
    for c in &p.changes {
        assert!(
            (c.path.starts_with("/etc/systemd/system/")
                || c.path.starts_with("/etc/systemd/system.control/"))
                && !c.path.split('/').any(|p| p == ".."),
            "plan writes {}",
            c.path
        );
        assert!(
            c.path.starts_with("/etc/systemd/"),
            "plan writes {}",
            c.path
        );
        match c.action {
            Action::Remove => {
                assert!(
                    plan::is_generated(&c.old),
                    "plan removes a file it did not write: {}",
                    c.path
                );
                files.remove(&c.path);
            }
            Action::Create | Action::Replace => {
                assert!(plan::is_generated(&c.new));
                files.insert(c.path.clone(), c.new.clone());
            }
        }
    }
    // A strategy forced against the version may not work: only a natural plan must converge.
    if p.warnings.iter().any(|w| w.starts_with("--strategy")) {
        return;
    }
    let again = discover_in(&files, version).expect("the unit is still there");
    let q = plan::plan_unit(&again, v.as_ref(), forced).expect("the planned tree plans again");
    assert_eq!(
        q.after.mount_flags,
        dropfix::effective::MountFlags::Unset,
        "after the plan MountFlags is {:?}",
        q.after.mount_flags
    );
    assert!(
        q.changes.is_empty(),
        "a second plan changes {:?}",
        q.changes.iter().map(|c| &c.path).collect::<Vec<_>>()
    );
}
