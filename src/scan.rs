//! Scan: which services run (or would run) in a mount namespace that hides their mounts from
//! the host, from systemd's properties (live) or from the unit files (`--root`).

use crate::effective::{self, Effective, MountFlags};
use crate::manager::PropValue;
use serde::Serialize;
use std::collections::HashMap;

/// Units known to make mounts that other processes need to see.
const MOUNT_MAKERS: &[&str] = &[
    "docker",
    "containerd",
    "kubelet",
    "crio",
    "cri-o",
    "podman",
    "flannel",
    "cni",
];

/// One service with a private mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Unit name.
    pub unit: String,
    /// MountFlags: slave, private, shared or "" (unset).
    pub mount_flags: String,
    /// Other settings that force a mount namespace, as `Key=value`.
    pub settings: Vec<String>,
    /// ActiveState (live; null offline).
    pub active: Option<String>,
    /// Known to make mounts others need (docker, containerd, kubelet, ...).
    pub makes_mounts: bool,
    /// What shares its mounts with the host again: `dropfix fix UNIT` when MountFlags alone
    /// hides them, else `dropfix set UNIT Service.Key=off... --restart` for the other settings.
    pub command: String,
}

/// Does this unit name belong to software known to make mounts others need?
pub fn makes_mounts(unit: &str) -> bool {
    let stem = unit
        .rsplit_once('.')
        .map_or(unit, |(s, _)| s)
        .to_ascii_lowercase();
    MOUNT_MAKERS.iter().any(|m| stem.contains(m))
}

/// Whether a MountFlags value alone creates a namespace on this systemd: slave and private
/// always; shared before 242 (v242 treats it like unset).
fn flags_hide(flags: MountFlags, version: Option<u32>) -> bool {
    match flags {
        MountFlags::Slave | MountFlags::Private => true,
        MountFlags::Shared => version.is_some_and(|v| v < 242),
        MountFlags::Unset => false,
    }
}

/// A row from systemd's Service properties, when the unit has a private mount namespace.
pub fn from_properties(
    unit: &str,
    active: &str,
    props: &HashMap<String, PropValue>,
    version: Option<u32>,
) -> Option<Row> {
    let flags = match props.get("MountFlags") {
        Some(PropValue::Num(n)) => MountFlags::from_bus(*n).unwrap_or(MountFlags::Unset),
        _ => MountFlags::Unset,
    };
    let mut settings = Vec::new();
    for key in effective::namespacing_keys() {
        let hit = match props.get(key) {
            Some(PropValue::Bool(b)) => b.then(|| "yes".to_string()),
            Some(PropValue::Str(s)) => effective::forces_namespace(key, s, None).then(|| s.clone()),
            Some(PropValue::List(n)) => {
                effective::forces_namespace(key, "", Some(*n)).then(|| format!("({n} entries)"))
            }
            Some(PropValue::Strings(v)) => {
                effective::forces_namespace(key, "", Some(v.len())).then(|| v.join(" "))
            }
            _ => None,
        };
        if let Some(v) = hit {
            settings.push(format!("{key}={v}"));
        }
    }
    row(unit, Some(active), flags, settings, version)
}

/// A row from the merged unit files, when the unit would have a private mount namespace.
pub fn from_effective(unit: &str, eff: &Effective, version: Option<u32>) -> Option<Row> {
    let settings = eff
        .namespacing
        .iter()
        .map(|n| format!("{}={}", n.key, n.value))
        .collect();
    row(unit, None, eff.mount_flags, settings, version)
}

fn row(
    unit: &str,
    active: Option<&str>,
    flags: MountFlags,
    settings: Vec<String>,
    version: Option<u32>,
) -> Option<Row> {
    if !flags_hide(flags, version) && settings.is_empty() {
        return None;
    }
    let keys: Vec<&str> = settings
        .iter()
        .filter_map(|s| s.split_once('=').map(|(k, _)| k))
        .collect();
    let command = if keys.is_empty() {
        crate::why::fix_command(unit)
    } else {
        let sets: Vec<String> = keys
            .iter()
            .map(|k| format!("Service.{k}={}", crate::why::off_value(k)))
            .collect();
        let set = format!("dropfix set {unit} {} --restart", sets.join(" "));
        // MountFlags too: both settings keep the namespace, so both commands are needed.
        if flags_hide(flags, version) {
            format!("{} && {set}", crate::why::fix_command(unit))
        } else {
            set
        }
    };
    Some(Row {
        command,
        unit: unit.to_string(),
        mount_flags: flags.as_str().to_string(),
        settings,
        active: active.map(str::to_string),
        makes_mounts: makes_mounts(unit),
    })
}

/// The rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let w = rows.iter().map(|r| r.unit.len()).max().unwrap_or(4).max(4);
    let a = rows
        .iter()
        .map(|r| r.active.as_deref().unwrap_or("-").len())
        .max()
        .unwrap_or(0)
        .max(6);
    out.push_str(&format!(
        "{:<w$}  {:<10}  {:<a$}  {:<12}  OTHER SETTINGS\n",
        "UNIT", "MOUNTFLAGS", "ACTIVE", "MAKES MOUNTS"
    ));
    for r in rows {
        let line = format!(
            "{:<w$}  {:<10}  {:<a$}  {:<12}  {}\n",
            r.unit,
            if r.mount_flags.is_empty() {
                "-"
            } else {
                &r.mount_flags
            },
            r.active.as_deref().unwrap_or("-"),
            if r.makes_mounts { "yes" } else { "-" },
            r.settings.join(" ")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_carries_the_command_that_shares_its_mounts_again() {
        let mut eff = Effective {
            mount_flags: MountFlags::Slave,
            steps: vec![],
            namespacing: vec![],
        };
        let r = from_effective("cni.service", &eff, Some(252)).unwrap();
        assert_eq!(r.command, "dropfix fix cni.service");
        eff.mount_flags = MountFlags::Unset;
        eff.namespacing.push(effective::Namespacing {
            key: "PrivateMounts".into(),
            value: "yes".into(),
            origin: effective::Origin {
                path: "/x".into(),
                line: 1,
                value: "yes".into(),
            },
        });
        let r = from_effective("q.service", &eff, Some(252)).unwrap();
        assert_eq!(
            r.command,
            "dropfix set q.service Service.PrivateMounts=no --restart"
        );
        // Both MountFlags and another setting: both commands.
        eff.mount_flags = MountFlags::Private;
        let r = from_effective("q.service", &eff, Some(252)).unwrap();
        assert_eq!(
            r.command,
            "dropfix fix q.service && dropfix set q.service Service.PrivateMounts=no --restart"
        );
    }

    #[test]
    fn slave_and_sandboxing_are_rows_plain_units_are_not() {
        let mut p = HashMap::new();
        p.insert("MountFlags".to_string(), PropValue::Num(524_288));
        let r = from_properties("docker.service", "active", &p, Some(252)).unwrap();
        assert_eq!(r.mount_flags, "slave");
        assert!(r.makes_mounts);
        let mut q = HashMap::new();
        q.insert("MountFlags".to_string(), PropValue::Num(0));
        q.insert("PrivateTmp".to_string(), PropValue::Bool(true));
        q.insert("ProtectSystem".to_string(), PropValue::Str("no".into()));
        q.insert("ReadOnlyPaths".to_string(), PropValue::List(0));
        let r = from_properties("x.service", "active", &q, Some(252)).unwrap();
        assert_eq!(r.settings, ["PrivateTmp=yes"]);
        let mut plain = HashMap::new();
        plain.insert("MountFlags".to_string(), PropValue::Num(0));
        plain.insert("PrivateTmp".to_string(), PropValue::Bool(false));
        assert!(from_properties("y.service", "active", &plain, Some(252)).is_none());
    }

    #[test]
    fn shared_hides_mounts_only_before_242() {
        let mut p = HashMap::new();
        p.insert("MountFlags".to_string(), PropValue::Num(1_048_576));
        assert!(from_properties("a.service", "", &p, Some(241)).is_some());
        assert!(from_properties("a.service", "", &p, Some(252)).is_none());
    }

    #[test]
    fn known_mount_makers() {
        for u in [
            "docker.service",
            "containerd.service",
            "kubelet.service",
            "crio.service",
            "flanneld.service",
            "early-docker.service",
        ] {
            assert!(makes_mounts(u), "{u}");
        }
        assert!(!makes_mounts("sshd.service"));
    }
}
