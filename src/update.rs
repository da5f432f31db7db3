//! Updates: a copy of a unit in /etc/systemd/system hides every later change to the vendor
//! file. This stage tells dropfix's own copy (made from a recorded vendor text) from a
//! hand-made one, tells a vendor update from an administrator's edit, and plans what keeps the
//! fix right: the copy made again from the new vendor file (a three-way merge keeps the
//! administrator's edits), the copy replaced by drop-ins once systemd no longer needs it, or a
//! hand-made copy replaced by drop-ins when asked. Pure: the app reads, this decides.

use crate::discover::{self, Discovered, DropIn, Fragment, Link, ETC_UNITS};
use crate::effective;
use crate::plan::{self, Action, FileChange, Strategy, UnitPlan};
use crate::root::{join, parent};
use crate::settings;
use crate::state::{Chosen, Provenance};
use crate::version::Version;
use anyhow::{anyhow, Result};
use std::collections::HashMap;

/// Name of the drop-in that carries the settings a replaced copy changed. It sorts before
/// other drop-ins, where the copy's settings stood (the fragment comes first).
pub const CARRIED_DROPIN: &str = "00-dropfix-copy.conf";

/// A unit file in /etc/systemd/system that hides a vendor file of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// In-root path of the copy.
    pub path: String,
    /// Its bytes.
    pub data: Vec<u8>,
    /// The vendor file it hides.
    pub vendor_path: String,
    /// Rank of the vendor file's search directory.
    pub vendor_rank: usize,
    /// The vendor file's bytes now.
    pub vendor: Vec<u8>,
}

/// Who made a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maker<'a> {
    /// dropfix, which recorded the vendor text it made the copy from.
    Dropfix(&'a Provenance),
    /// An older dropfix, which recorded only what it wrote.
    OlderDropfix {
        /// The copy as that dropfix wrote it.
        written: &'a str,
    },
    /// Someone else.
    Hand,
}

/// What is known about the copy of one unit.
#[derive(Debug, Clone, Copy)]
pub struct CopyFacts<'a> {
    /// The copy and the vendor file it hides.
    pub copy: &'a Copy,
    /// Who made it.
    pub maker: Maker<'a>,
}

/// Whether the vendor file changed since dropfix made its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The vendor file is the one the copy was made from.
    Current,
    /// The vendor file changed: the vendor's own change as a unified diff (None when an older
    /// dropfix did not record the text it started from).
    Stale {
        /// base -> vendor file now.
        vendor_diff: Option<String>,
    },
}

/// Why a copy cannot be said as drop-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotExact(pub Vec<String>);

/// A conflict between an administrator's edits to dropfix's copy and the vendor's update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Unit name.
    pub unit: String,
    /// The copy.
    pub copy: String,
    /// The vendor file.
    pub vendor: String,
    /// The merge with conflict markers (`<<<<<<< ours` the copy, `>>>>>>> theirs` the new
    /// vendor file, `||||||| original` what dropfix made of the old one).
    pub text: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: your edits to {} and the vendor's change to {} touch the same lines; nothing written. Carry your edits into a drop-in ({}/{}.d/NAME.conf or `dropfix set`), remove {} and run `dropfix fix` again, which copies the new vendor file",
            self.unit, self.copy, self.vendor, ETC_UNITS, self.unit, self.copy
        )
    }
}

impl std::error::Error for Conflict {}

/// The copy of `d`'s unit in /etc/systemd/system and the vendor file it hides, if the fragment
/// is such a copy. `read` reads an in-root file.
pub fn find_copy(
    d: &Discovered,
    dirs: &[discover::SearchDir],
    read: &dyn Fn(&str) -> Result<Vec<u8>>,
) -> Result<Option<Copy>> {
    let target = join(ETC_UNITS, d.unit.as_str());
    if d.fragment.path != target || d.fragment.link != Link::None {
        return Ok(None);
    }
    let Some(vendor_path) = d.fragment.shadows.first() else {
        return Ok(None);
    };
    let Some(vendor_rank) = dirs
        .iter()
        .find(|s| s.path == parent(vendor_path))
        .map(|s| s.rank)
    else {
        return Ok(None);
    };
    let vendor = read(vendor_path)?;
    if vendor.is_empty() {
        return Ok(None);
    }
    Ok(Some(Copy {
        path: target,
        data: d.fragment.data.clone(),
        vendor_path: vendor_path.clone(),
        vendor_rank,
        vendor,
    }))
}

fn section_of(d: &Discovered) -> Result<&'static str> {
    effective::exec_section(d.unit.unit_type()).ok_or_else(|| {
        anyhow!(
            "{}: a .{} unit has no MountFlags= setting",
            d.unit,
            d.unit.unit_type()
        )
    })
}

/// Has the vendor file changed since dropfix made its copy? None for a hand-made copy.
pub fn freshness(d: &Discovered, facts: &CopyFacts) -> Result<Option<Freshness>> {
    let c = facts.copy;
    Ok(match facts.maker {
        Maker::Hand => None,
        Maker::Dropfix(p) => Some(if p.base.as_bytes() == c.vendor.as_slice() {
            Freshness::Current
        } else {
            Freshness::Stale {
                vendor_diff: Some(crate::render::diff(
                    &c.vendor_path,
                    p.base.as_bytes(),
                    &c.vendor,
                )),
            }
        }),
        Maker::OlderDropfix { written } => {
            let now =
                plan::full_copy_text(d.unit.as_str(), section_of(d)?, &c.vendor_path, &c.vendor)?;
            Some(if now == written.as_bytes() {
                Freshness::Current
            } else {
                Freshness::Stale { vendor_diff: None }
            })
        }
    })
}

/// The copy as it should be for the vendor file now: made again from it, with the
/// administrator's edits since dropfix last made it merged in. `Ok(None)`: nothing changed.
fn remade(d: &Discovered, facts: &CopyFacts) -> Result<Option<(Vec<u8>, bool)>> {
    let c = facts.copy;
    let unit = d.unit.as_str();
    let section = section_of(d)?;
    let ancestor = match facts.maker {
        Maker::Dropfix(p) if p.base.as_bytes() == c.vendor.as_slice() => return Ok(None),
        Maker::Dropfix(p) => plan::full_copy_text(unit, section, &p.source, p.base.as_bytes())?,
        Maker::OlderDropfix { written } => written.as_bytes().to_vec(),
        Maker::Hand => return Ok(None),
    };
    let theirs = plan::full_copy_text(unit, section, &c.vendor_path, &c.vendor)?;
    if theirs == ancestor {
        return Ok(None);
    }
    if c.data == ancestor {
        return Ok(Some((theirs, false)));
    }
    let text = |b: &[u8]| discover::text(&c.path, b);
    let (a, o, t) = (text(&ancestor)?, text(&c.data)?, text(&theirs)?);
    match diffy::merge(&a, &o, &t) {
        Ok(merged) => Ok(Some((merged.into_bytes(), true))),
        Err(conflict) => Err(anyhow::Error::new(Conflict {
            unit: unit.to_string(),
            copy: c.path.clone(),
            vendor: c.vendor_path.clone(),
            text: conflict,
        })),
    }
}

/// Settings by (section, key) -> final value, MountFlags left out (dropfix decides it).
fn settings_map(sources: &[discover::Source]) -> HashMap<(String, String), String> {
    settings::merge_all(sources)
        .into_iter()
        .filter(|s| s.key != "MountFlags")
        .map(|s| ((s.section, s.key), s.value))
        .collect()
}

/// The drop-in that says, over the vendor file, what `copy` says: the settings it changes,
/// MountFlags left out. `Err` when a drop-in cannot say it exactly, with the reasons.
pub fn carried_dropin(
    d: &Discovered,
    copy_path: &str,
    copy: &[u8],
    vendor_path: &str,
    vendor: &[u8],
) -> Result<std::result::Result<Option<DropIn>, NotExact>> {
    let unit = d.unit.as_str();
    let parse = |path: &str, data: &[u8]| discover::parse_sources(path, data, &[]);
    let ours = settings::merge_all(&parse(copy_path, copy)?);
    let theirs = settings::merge_all(&parse(vendor_path, vendor)?);
    let find = |v: &[settings::Setting], s: &str, k: &str| {
        v.iter()
            .find(|x| x.section == s && x.key == k)
            .map(|x| {
                if x.values.is_empty()
                    && crate::directives::merge_kind(k) == crate::directives::Merge::Single
                {
                    if x.value.is_empty() {
                        Vec::new()
                    } else {
                        vec![x.value.clone()]
                    }
                } else {
                    x.values.iter().map(|c| c.value.clone()).collect()
                }
            })
            .unwrap_or_default()
    };
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in ours.iter().chain(theirs.iter()) {
        let k = (s.section.clone(), s.key.clone());
        if s.key != "MountFlags" && !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut why = Vec::new();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for (section, key) in keys {
        let (o, t) = (find(&ours, &section, &key), find(&theirs, &section, &key));
        if o == t {
            continue;
        }
        if section == "Install" {
            why.push(format!(
                "[Install] {key}= differs, and systemd ignores [Install] in drop-ins"
            ));
            continue;
        }
        let mut lines = Vec::new();
        match crate::directives::merge_kind(&key) {
            crate::directives::Merge::Single => {
                lines.push(format!("{key}={}", o.first().map_or("", |v| v.as_str())))
            }
            crate::directives::Merge::List => {
                lines.push(format!("{key}="));
                lines.extend(o.iter().map(|v| format!("{key}={v}")));
            }
            crate::directives::Merge::Deps => {
                if t.iter().any(|v| !o.contains(v)) {
                    why.push(format!(
                        "the copy drops a {key}= dependency, which a drop-in cannot remove"
                    ));
                    continue;
                }
                lines.extend(
                    o.iter()
                        .filter(|v| !t.contains(v))
                        .map(|v| format!("{key}={v}")),
                );
            }
        }
        match sections.iter_mut().find(|(s, _)| *s == section) {
            Some((_, l)) => l.extend(lines),
            None => sections.push((section, lines)),
        }
    }
    if !why.is_empty() {
        return Ok(Err(NotExact(why)));
    }
    if sections.is_empty() {
        return Ok(Ok(None));
    }
    let mut text = plan::header(
        unit,
        &format!("the settings {copy_path} changed from {vendor_path}, carried over when dropfix replaced the copy with drop-ins"),
    );
    for (i, (section, lines)) in sections.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!("[{section}]\n"));
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
    }
    let etc_dir = plan::own_dropin_dir(unit);
    let order = d
        .dropin_dirs
        .iter()
        .position(|(p, _)| *p == etc_dir)
        .unwrap_or(0);
    let carried = DropIn {
        path: join(&etc_dir, CARRIED_DROPIN),
        rank: discover::etc_rank(),
        order,
        masked: false,
        data: text.into_bytes(),
    };
    // Exact means: the unit as systemd merges it, MountFlags aside, is the same either way.
    let others: Vec<DropIn> = d
        .dropins
        .iter()
        .filter(|x| x.path != carried.path)
        .cloned()
        .collect();
    let before = discover::parse_sources(copy_path, copy, &discover::applied(&others))?;
    let mut with = others.clone();
    with.push(carried.clone());
    let after = discover::parse_sources(vendor_path, vendor, &discover::applied(&with))?;
    let (b, a) = (settings_map(&before), settings_map(&after));
    let mut differ: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|((s, k), _)| format!("{s}.{k}"))
        .chain(
            a.keys()
                .filter(|k| !b.contains_key(*k))
                .map(|(s, k)| format!("{s}.{k}")),
        )
        .collect();
    differ.sort();
    differ.dedup();
    if !differ.is_empty() {
        return Ok(Err(NotExact(vec![format!(
            "with drop-ins {} would come out differently (other drop-ins apply in between)",
            differ.join(", ")
        )])));
    }
    Ok(Ok(Some(carried)))
}

/// Replace the copy at `copy_path` (holding `text`) with drop-ins: the carried settings, and
/// dropfix's MountFlags drop-in planned over the vendor file. `Err(NotExact)` when drop-ins
/// cannot say what the copy says.
fn replace_with_dropins(
    d: &Discovered,
    c: &Copy,
    text: &[u8],
    version: Option<&Version>,
    forced: Option<Strategy>,
) -> Result<std::result::Result<UnitPlan, NotExact>> {
    let carried = match carried_dropin(d, &c.path, text, &c.vendor_path, &c.vendor)? {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let mut over_vendor = d.clone();
    over_vendor.fragment = Fragment {
        path: c.vendor_path.clone(),
        rank: c.vendor_rank,
        link: Link::None,
        data: c.vendor.clone(),
        shadows: Vec::new(),
    };
    if let Some(x) = &carried {
        over_vendor.dropins.retain(|y| y.path != x.path);
        over_vendor.dropins.push(x.clone());
    }
    let mut p = plan::plan_unit(&over_vendor, version, forced)?;
    let mut changes = Vec::new();
    if let Some(x) = &carried {
        let existing = d.dropins.iter().find(|y| y.path == x.path);
        changes.push(FileChange {
            path: x.path.clone(),
            action: if existing.is_some() {
                Action::Replace
            } else {
                Action::Create
            },
            old: existing.map(|y| y.data.clone()).unwrap_or_default(),
            new: x.data.clone(),
            purpose: format!("the settings {} changed", c.path),
            link: None,
        });
    }
    changes.append(&mut p.changes);
    // Last: until the drop-ins are in place, the copy keeps MountFlags unset.
    changes.push(FileChange {
        path: c.path.clone(),
        action: Action::Remove,
        old: c.data.clone(),
        new: Vec::new(),
        purpose: "replaced by drop-ins".into(),
        link: None,
    });
    p.changes = changes;
    if p.strategy.is_none() {
        // The vendor file alone has MountFlags unset: drop-ins of dropfix's are not needed.
        p.notes.clear();
    }
    p.strategy = Some(Strategy::DropIn);
    if carried.is_some() {
        p.notes.insert(
            0,
            format!(
                "the settings {} changes are carried into {}",
                c.path,
                join(&plan::own_dropin_dir(d.unit.as_str()), CARRIED_DROPIN)
            ),
        );
    }
    Ok(Ok(p))
}

/// The plan for a unit whose fragment is a copy in /etc/systemd/system, when the copy calls
/// for more than the usual plan: dropfix's copy after a vendor or systemd update, or a
/// hand-made copy with `replace_copy`. `Ok(None)`: plan as usual. A conflict between an
/// administrator's edits and the vendor's change is an error ([`Conflict`]).
pub fn plan_copy(
    d: &Discovered,
    facts: &CopyFacts,
    version: Option<&Version>,
    forced: Option<Strategy>,
    replace_copy: bool,
) -> Result<Option<(UnitPlan, Vec<Provenance>)>> {
    let c = facts.copy;
    let unit = d.unit.as_str();
    let recorded = match facts.maker {
        Maker::Dropfix(p) => Some(p),
        _ => None,
    };
    // The form a recorded choice or this run's --strategy asks for.
    let kept = match facts.maker {
        Maker::Dropfix(p) if p.chosen != Chosen::Auto => Some(p.strategy),
        Maker::OlderDropfix { .. } => Some(Strategy::FullCopy),
        _ => None,
    };
    let (want, _, _) = plan::choose(version, forced.or(kept));
    if facts.maker == Maker::Hand {
        if !replace_copy {
            return Ok(None);
        }
        if want == Strategy::FullCopy {
            return Err(crate::error::unit(
                unit,
                format!(
                    "--replace-copy: {} so {} stays a copy",
                    match version {
                        Some(v) => format!(
                            "systemd {} ignores an empty MountFlags= in a drop-in,",
                            v.major
                        ),
                        None =>
                            "the systemd version is unknown (give --systemd-version N),".to_string(),
                    },
                    c.path
                ),
            ));
        }
        return match replace_with_dropins(d, c, &c.data, version, forced)? {
            Ok(mut p) => {
                p.before = plan::plan_unit(d, version, forced)?.before;
                p.notes.insert(
                    0,
                    format!(
                        "--replace-copy: {} (not dropfix's) is replaced by drop-ins over {}, so vendor changes to it apply again; `dropfix revert` puts the copy back",
                        c.path, c.vendor_path
                    ),
                );
                Ok(Some((p, Vec::new())))
            }
            Err(NotExact(why)) => Err(crate::error::unit(
                unit,
                format!(
                    "--replace-copy: drop-ins cannot say exactly what {} says: {}; the copy stays",
                    c.path,
                    why.join("; ")
                ),
            )),
        };
    }
    let remade = remade(d, facts)?;
    let stale_note = remade.as_ref().map(|(_, merged)| {
        let mut n = format!(
            "{} changed since dropfix copied it to {}",
            c.vendor_path, c.path
        );
        if *merged {
            n.push_str(": your edits to the copy are merged with the vendor's change (three ways)");
        }
        n
    });
    let text = remade
        .as_ref()
        .map_or(c.data.as_slice(), |(t, _)| t.as_slice());
    if want == Strategy::DropIn {
        match replace_with_dropins(d, c, text, version, forced)? {
            Ok(mut p) => {
                p.before = plan::plan_unit(d, version, forced)?.before;
                let mut notes = vec![format!(
                    "{} no longer needs the copy {} dropfix made: it is replaced by drop-ins over {}, so vendor changes apply again",
                    version.map_or("this systemd".to_string(), |v| format!("systemd {}", v.major)),
                    c.path,
                    c.vendor_path
                )];
                notes.extend(stale_note);
                notes.append(&mut p.notes);
                p.notes = notes;
                return Ok(Some((p, Vec::new())));
            }
            Err(NotExact(why)) if remade.is_none() => {
                let mut p = plan::plan_unit(d, version, Some(Strategy::FullCopy))?;
                p.notes = vec![format!(
                    "{} stays a copy although this systemd would take drop-ins: drop-ins cannot say exactly what it says ({})",
                    c.path,
                    why.join("; ")
                )];
                return Ok(Some((p, Vec::new())));
            }
            Err(NotExact(why)) => {
                let (mut p, prov) = refresh(d, facts, text, version, recorded)?;
                p.notes.insert(
                    0,
                    format!(
                        "{} stays a copy, made again, although this systemd would take drop-ins: drop-ins cannot say exactly what it says ({})",
                        c.path,
                        why.join("; ")
                    ),
                );
                p.notes.extend(stale_note);
                return Ok(Some((p, prov)));
            }
        }
    }
    if remade.is_none() {
        return Ok(None);
    }
    let (mut p, prov) = refresh(d, facts, text, version, recorded)?;
    p.notes.extend(stale_note);
    if matches!(facts.maker, Maker::OlderDropfix { .. })
        && plan::choose(version, None).0 == Strategy::DropIn
    {
        p.notes.push(format!(
            "{} was made by an older dropfix that did not record whether --strategy forced it, so it stays a copy; `dropfix fix --strategy drop-in` replaces it with drop-ins",
            c.path
        ));
    }
    Ok(Some((p, prov)))
}

/// The copy made again: `text` written over the copy, then the usual plan over it (MountFlags
/// the merge let back in is commented out again; vendor drop-ins are neutralised as ever).
fn refresh(
    d: &Discovered,
    facts: &CopyFacts,
    text: &[u8],
    version: Option<&Version>,
    recorded: Option<&Provenance>,
) -> Result<(UnitPlan, Vec<Provenance>)> {
    let c = facts.copy;
    let mut over = d.clone();
    over.fragment.data = text.to_vec();
    let mut p = plan::plan_unit(&over, version, Some(Strategy::FullCopy))?;
    if p.strategy.is_none() {
        p.notes.clear();
    }
    p.strategy = Some(Strategy::FullCopy);
    p.before = plan::plan_unit(d, version, Some(Strategy::FullCopy))?.before;
    let new = p
        .changes
        .iter()
        .find(|x| x.path == c.path)
        .map_or_else(|| text.to_vec(), |x| x.new.clone());
    p.changes.retain(|x| x.path != c.path);
    p.changes.insert(
        0,
        FileChange {
            path: c.path.clone(),
            action: Action::Replace,
            old: c.data.clone(),
            new,
            purpose: format!("the copy made again from {}", c.vendor_path),
            link: None,
        },
    );
    let prov = Provenance {
        path: c.path.clone(),
        unit: d.unit.to_string(),
        source: c.vendor_path.clone(),
        base: String::from_utf8_lossy(&c.vendor).into_owned(),
        strategy: Strategy::FullCopy,
        chosen: recorded.map_or(Chosen::Unknown, |r| r.chosen),
        systemd: version
            .map(|v| v.major)
            .or(recorded.and_then(|r| r.systemd)),
    };
    Ok((p, vec![prov]))
}

/// What a plan's new full copy is made from, to record with it.
pub fn new_copy_provenance(
    d: &Discovered,
    p: &UnitPlan,
    forced: Option<Strategy>,
) -> Result<Vec<Provenance>> {
    let target = join(ETC_UNITS, d.unit.as_str());
    let writes_copy = p
        .changes
        .iter()
        .any(|c| c.path == target && c.action != Action::Remove);
    if p.strategy != Some(Strategy::FullCopy) || d.fragment.path == target || !writes_copy {
        return Ok(Vec::new());
    }
    Ok(vec![Provenance {
        path: target,
        unit: d.unit.to_string(),
        source: d.fragment.path.clone(),
        base: String::from_utf8_lossy(&d.fragment.data).into_owned(),
        strategy: Strategy::FullCopy,
        chosen: if forced.is_some() {
            Chosen::Forced
        } else {
            Chosen::Auto
        },
        systemd: p.version.as_ref().map(|v| v.major),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unitname::UnitName;

    const VENDOR: &str = "/usr/lib/systemd/system/docker.service";
    const COPY: &str = "/etc/systemd/system/docker.service";

    fn unit(copy: &str) -> Discovered {
        Discovered {
            unit: UnitName::parse("docker.service").expect("a unit name"),
            aliases: Vec::new(),
            fragment: Fragment {
                path: COPY.into(),
                rank: discover::etc_rank(),
                link: Link::None,
                data: copy.as_bytes().to_vec(),
                shadows: vec![VENDOR.into()],
            },
            dropin_dirs: vec![(plan::own_dropin_dir("docker.service"), discover::etc_rank())],
            dropins: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn carried(copy: &str, vendor: &str) -> std::result::Result<Option<String>, NotExact> {
        let d = unit(copy);
        carried_dropin(&d, COPY, copy.as_bytes(), VENDOR, vendor.as_bytes())
            .expect("parses")
            .map(|x| x.map(|x| String::from_utf8(x.data).expect("text")))
    }

    #[test]
    fn a_changed_list_setting_is_reset_then_restated_in_the_carried_drop_in() {
        let vendor = "[Service]\nExecStart=/a\nEnvironment=A=1\nMountFlags=slave\n";
        let copy = "[Service]\nExecStart=/b\nEnvironment=A=1\nEnvironment=B=2\n";
        let text = carried(copy, vendor)
            .expect("exact")
            .expect("something to carry");
        assert!(
            text.ends_with(
                "[Service]\nExecStart=\nExecStart=/b\nEnvironment=\nEnvironment=A=1\nEnvironment=B=2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_copy_that_only_drops_mountflags_carries_nothing() {
        let vendor = "[Service]\nExecStart=/a\nMountFlags=slave\n";
        let copy = "[Service]\nExecStart=/a\n#MountFlags=slave\n";
        assert_eq!(carried(copy, vendor), Ok(None));
    }

    #[test]
    fn a_removed_dependency_or_install_change_cannot_be_carried() {
        let vendor = "[Unit]\nAfter=a.service b.service\n[Service]\nExecStart=/a\n";
        let copy = "[Unit]\nAfter=a.service\n[Service]\nExecStart=/a\n";
        let Err(NotExact(why)) = carried(copy, vendor) else {
            panic!("a drop-in cannot remove After=");
        };
        assert!(why[0].contains("After="), "{why:?}");
        let vendor = "[Service]\nExecStart=/a\n[Install]\nWantedBy=multi-user.target\n";
        let copy = "[Service]\nExecStart=/a\n[Install]\nWantedBy=other.target\n";
        assert!(carried(copy, vendor).is_err());
    }

    #[test]
    fn edits_and_a_vendor_change_to_the_same_line_are_a_typed_conflict() {
        let base = "[Service]\nExecStart=/a\nMountFlags=slave\n";
        let v2 = "[Service]\nExecStart=/a --v2\nMountFlags=slave\n";
        let made = plan::full_copy_text("docker.service", "Service", VENDOR, base.as_bytes())
            .expect("copy text");
        let edited = String::from_utf8(made)
            .expect("text")
            .replace("ExecStart=/a", "ExecStart=/a --mine");
        let d = unit(&edited);
        let copy = Copy {
            path: COPY.into(),
            data: edited.into_bytes(),
            vendor_path: VENDOR.into(),
            vendor_rank: 11,
            vendor: v2.as_bytes().to_vec(),
        };
        let prov = Provenance {
            path: COPY.into(),
            unit: "docker.service".into(),
            source: VENDOR.into(),
            base: base.into(),
            strategy: Strategy::FullCopy,
            chosen: Chosen::Auto,
            systemd: Some(231),
        };
        let facts = CopyFacts {
            copy: &copy,
            maker: Maker::Dropfix(&prov),
        };
        let v231 = Version {
            major: 231,
            source: "test".into(),
        };
        let e = plan_copy(&d, &facts, Some(&v231), None, false).expect_err("a conflict");
        let c = e.downcast_ref::<Conflict>().expect("typed");
        assert!(
            c.text.contains("<<<<<<< ours\nExecStart=/a --mine\n"),
            "{}",
            c.text
        );
        assert!(c.text.contains(">>>>>>> theirs"), "{}", c.text);
    }
}
