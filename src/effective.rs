//! Effective settings: merge parsed sources with systemd's rules into the values that matter
//! for mount propagation (MountFlags and every setting that still forces a mount namespace).

use crate::discover::Source;
use serde::Serialize;

/// The propagation a unit's `MountFlags=` leaves in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountFlags {
    /// Not set (D-Bus 0): no mount namespace of its own from this setting.
    Unset,
    /// `shared` (1048576).
    Shared,
    /// `slave` (524288).
    Slave,
    /// `private` (262144).
    Private,
}

impl MountFlags {
    /// The name used in unit files and JSON (`""` for unset).
    pub fn as_str(self) -> &'static str {
        match self {
            MountFlags::Unset => "",
            MountFlags::Shared => "shared",
            MountFlags::Slave => "slave",
            MountFlags::Private => "private",
        }
    }

    /// How a person reads it.
    pub fn describe(self) -> &'static str {
        match self {
            MountFlags::Unset => "(unset)",
            other => other.as_str(),
        }
    }

    /// From the D-Bus `MountFlags` property (type t).
    pub fn from_bus(v: u64) -> Option<Self> {
        match v {
            0 => Some(MountFlags::Unset),
            1_048_576 => Some(MountFlags::Shared),
            524_288 => Some(MountFlags::Slave),
            262_144 => Some(MountFlags::Private),
            _ => None,
        }
    }
}

/// How the running systemd parses an empty `MountFlags=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyAssignment {
    /// v233 and later (and before v229): an empty value resets to unset.
    Resets,
    /// v229 to v232: "Failed to parse mount flag , ignoring." and the old value stays.
    Ignored,
}

impl EmptyAssignment {
    /// The rule for a systemd version.
    pub fn for_version(v: u32) -> Self {
        if (229..=232).contains(&v) {
            EmptyAssignment::Ignored
        } else {
            EmptyAssignment::Resets
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// In-root path of the file.
    pub path: String,
    /// 1-based line of the assignment.
    pub line: usize,
    /// The raw value written there.
    pub value: String,
}

/// What an assignment of MountFlags did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The assignment.
    #[serde(flatten)]
    pub origin: Origin,
    /// Whether systemd took it (false: it logs a warning and keeps the previous value).
    pub applied: bool,
}

/// A setting other than MountFlags that gives the service its own mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespacing {
    /// Key, e.g. `PrivateTmp`.
    pub key: String,
    /// Effective value.
    pub value: String,
    /// The assignment that decided it.
    pub origin: Origin,
}

/// The merged view of a unit, as far as mount propagation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The MountFlags in force.
    pub mount_flags: MountFlags,
    /// Every MountFlags assignment in the order systemd applies them.
    pub steps: Vec<Step>,
    /// Settings that keep a mount namespace even with MountFlags unset.
    pub namespacing: Vec<Namespacing>,
}

impl Effective {
    /// The assignment that decided the MountFlags in force.
    pub fn decided_by(&self) -> Option<&Origin> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.applied)
            .map(|s| &s.origin)
    }
}

/// The section a unit type's exec settings live in.
pub fn exec_section(unit_type: &str) -> Option<&'static str> {
    match unit_type {
        "service" => Some("Service"),
        "socket" => Some("Socket"),
        "mount" => Some("Mount"),
        "swap" => Some("Swap"),
        _ => None,
    }
}

enum Kind {
    /// Boolean: true forces a namespace.
    Bool,
    /// A list: non-empty forces a namespace; an empty assignment clears it.
    List,
    /// Anything but these values forces a namespace.
    NotIn(&'static [&'static str]),
}

const BOOL_FALSE: &[&str] = &["", "0", "no", "false", "off", "n", "f"];

/// Settings that make `exec_needs_mount_namespace()` true (v231 to v256).
const NAMESPACING: &[(&str, Kind)] = &[
    ("PrivateTmp", Kind::Bool),
    ("PrivateDevices", Kind::Bool),
    ("PrivateMounts", Kind::Bool),
    ("PrivateIPC", Kind::Bool),
    ("ProtectSystem", Kind::NotIn(BOOL_FALSE)),
    ("ProtectHome", Kind::NotIn(BOOL_FALSE)),
    ("ProtectKernelTunables", Kind::Bool),
    ("ProtectKernelModules", Kind::Bool),
    ("ProtectKernelLogs", Kind::Bool),
    ("ProtectControlGroups", Kind::Bool),
    ("ProtectProc", Kind::NotIn(&["", "default"])),
    ("ProcSubset", Kind::NotIn(&["", "all"])),
    ("ReadWritePaths", Kind::List),
    ("ReadOnlyPaths", Kind::List),
    ("InaccessiblePaths", Kind::List),
    ("ExecPaths", Kind::List),
    ("NoExecPaths", Kind::List),
    ("ReadWriteDirectories", Kind::List),
    ("ReadOnlyDirectories", Kind::List),
    ("InaccessibleDirectories", Kind::List),
    ("BindPaths", Kind::List),
    ("BindReadOnlyPaths", Kind::List),
    ("TemporaryFileSystem", Kind::List),
    ("MountImages", Kind::List),
    ("ExtensionImages", Kind::List),
    ("ExtensionDirectories", Kind::List),
    ("RootDirectory", Kind::NotIn(&[""])),
    ("RootImage", Kind::NotIn(&[""])),
    ("LogNamespace", Kind::NotIn(&[""])),
    ("IPCNamespacePath", Kind::NotIn(&[""])),
];

/// Names of the settings (and D-Bus properties) that force a mount namespace.
pub fn namespacing_keys() -> impl Iterator<Item = &'static str> {
    NAMESPACING.iter().map(|(k, _)| *k)
}

/// Does a setting's value (as systemd reports it over D-Bus, reduced to a string or a list
/// length) force a mount namespace?
pub fn forces_namespace(key: &str, value: &str, list_len: Option<usize>) -> bool {
    match NAMESPACING
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| kind)
    {
        Some(Kind::List) => list_len.unwrap_or(0) > 0,
        Some(Kind::Bool) => !BOOL_FALSE.contains(&value.to_ascii_lowercase().as_str()),
        Some(Kind::NotIn(off)) => !off.contains(&value.to_ascii_lowercase().as_str()),
        None => false,
    }
}

fn parse_mount_flags(value: &str, empty: EmptyAssignment) -> Option<MountFlags> {
    // MountFlags does no unquoting and no specifiers: the value must match exactly.
    match value {
        "" => (empty == EmptyAssignment::Resets).then_some(MountFlags::Unset),
        "shared" => Some(MountFlags::Shared),
        "slave" => Some(MountFlags::Slave),
        "private" => Some(MountFlags::Private),
        _ => None,
    }
}

/// Merge `sources` (fragment first, then applied drop-ins) for a unit whose exec settings
/// live in `section`.
pub fn merge(sources: &[Source], section: &str, empty: EmptyAssignment) -> Effective {
    let mut mount_flags = MountFlags::Unset;
    let mut steps = Vec::new();
    let mut found: Vec<Option<Namespacing>> = vec![None; NAMESPACING.len()];
    for src in sources {
        for a in src.file.assignments.iter().filter(|a| a.section == section) {
            let origin = || Origin {
                path: src.path.clone(),
                line: a.line,
                value: a.value.clone(),
            };
            if a.key == "MountFlags" {
                let parsed = parse_mount_flags(&a.value, empty);
                if let Some(v) = parsed {
                    mount_flags = v;
                }
                steps.push(Step {
                    origin: origin(),
                    applied: parsed.is_some(),
                });
                continue;
            }
            let Some(i) = NAMESPACING.iter().position(|(k, _)| *k == a.key) else {
                continue;
            };
            let (key, kind) = &NAMESPACING[i];
            let on = match kind {
                Kind::Bool => !BOOL_FALSE.contains(&a.value.to_ascii_lowercase().as_str()),
                Kind::NotIn(off) => !off.contains(&a.value.to_ascii_lowercase().as_str()),
                Kind::List => !a.value.is_empty(),
            };
            let prev = found[i].take();
            found[i] = if on {
                let value = match (kind, prev) {
                    // Appended in place: a copy per assignment is quadratic in a hostile file.
                    (Kind::List, Some(mut p)) => {
                        p.value.push(' ');
                        p.value.push_str(&a.value);
                        p.value
                    }
                    _ => a.value.clone(),
                };
                Some(Namespacing {
                    key: key.to_string(),
                    value,
                    origin: origin(),
                })
            } else {
                None
            };
        }
    }
    Effective {
        mount_flags,
        steps,
        namespacing: found.into_iter().flatten().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax;

    fn src(path: &str, text: &str) -> Source {
        Source {
            path: path.into(),
            file: syntax::parse(text.as_bytes()).unwrap(),
            stopped: None,
        }
    }

    #[test]
    fn last_mountflags_assignment_wins() {
        let s = [
            src(
                "/usr/lib/systemd/system/docker.service",
                "[Service]\nMountFlags=slave\n",
            ),
            src(
                "/etc/systemd/system/docker.service.d/a.conf",
                "[Service]\nMountFlags=shared\n",
            ),
        ];
        let e = merge(&s, "Service", EmptyAssignment::Resets);
        assert_eq!(e.mount_flags, MountFlags::Shared);
        assert_eq!(
            e.decided_by().unwrap().path,
            "/etc/systemd/system/docker.service.d/a.conf"
        );
    }

    #[test]
    fn empty_mountflags_resets_from_233_on() {
        let s = [
            src("/u", "[Service]\nMountFlags=slave\n"),
            src("/e", "[Service]\nMountFlags=\n"),
        ];
        assert_eq!(
            merge(&s, "Service", EmptyAssignment::Resets).mount_flags,
            MountFlags::Unset
        );
    }

    #[test]
    fn empty_mountflags_ignored_on_229_to_232_so_slave_stays() {
        let s = [
            src("/u", "[Service]\nMountFlags=slave\n"),
            src("/e", "[Service]\nMountFlags=\n"),
        ];
        let e = merge(&s, "Service", EmptyAssignment::for_version(231));
        assert_eq!(e.mount_flags, MountFlags::Slave);
        assert!(!e.steps[1].applied);
        assert_eq!(EmptyAssignment::for_version(228), EmptyAssignment::Resets);
        assert_eq!(EmptyAssignment::for_version(233), EmptyAssignment::Resets);
    }

    #[test]
    fn invalid_or_quoted_value_is_ignored_and_previous_stays() {
        let s = [src(
            "/u",
            "[Service]\nMountFlags=slave\nMountFlags=bogus\nMountFlags=\"shared\"\nMountFlags=Shared\n",
        )];
        assert_eq!(
            merge(&s, "Service", EmptyAssignment::Resets).mount_flags,
            MountFlags::Slave
        );
    }

    #[test]
    fn mountflags_in_another_section_does_not_count() {
        let s = [src("/u", "[Unit]\nMountFlags=slave\n[ Service ]\nMountFlags=slave\n[X-Service]\nMountFlags=slave\n")];
        assert_eq!(
            merge(&s, "Service", EmptyAssignment::Resets).mount_flags,
            MountFlags::Unset
        );
    }

    #[test]
    fn namespacing_settings_are_reported_and_empty_list_resets() {
        let s = [
            src(
                "/u",
                "[Service]\nPrivateTmp=yes\nReadOnlyPaths=/a\nProtectSystem=full\nProtectHome=no\n",
            ),
            src("/e", "[Service]\nReadOnlyPaths=\nPrivateDevices=false\n"),
        ];
        let e = merge(&s, "Service", EmptyAssignment::Resets);
        let keys: Vec<_> = e.namespacing.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(keys, ["PrivateTmp", "ProtectSystem"]);
        assert_eq!(e.namespacing[0].origin.line, 2);
    }

    #[test]
    fn bus_values_map_to_flags() {
        assert_eq!(MountFlags::from_bus(524_288), Some(MountFlags::Slave));
        assert_eq!(MountFlags::from_bus(0), Some(MountFlags::Unset));
        assert_eq!(MountFlags::from_bus(7), None);
    }
}
