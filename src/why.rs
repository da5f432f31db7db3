//! Why: for a network namespace the host cannot enter, the reason its holder's mount namespace
//! hides it (a unit setting with its file and line, or a container's propagation) and the
//! remedy. Pure: `app` gathers the holder's unit files and mountinfo.

use crate::effective::{Effective, MountFlags};
use crate::inspect::Propagation;
use serde::Serialize;

/// What is known about the process that holds a namespace's mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderFacts {
    /// Its unit, from its cgroup.
    pub unit: Option<String>,
    /// That unit's settings, merged from its files by dropfix's reader (None: no unit, or its
    /// files could not be read).
    pub settings: Option<Effective>,
    /// Propagation of the mount that holds /run in the holder's mount namespace.
    pub propagation: Option<Propagation>,
}

/// Which kind of reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseKind {
    /// A setting of the holder's unit gives it a mount namespace of its own.
    UnitSetting,
    /// No unit setting: the holder runs in a mount namespace made private or slave by whatever
    /// started it (a container runtime, `unshare`).
    Container,
    /// Neither could be told.
    Unknown,
}

/// One unit setting that gives the unit its own mount namespace, where it is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blame {
    /// The key, e.g. `PrivateMounts`.
    pub key: String,
    /// Its value, e.g. `yes`.
    pub value: String,
    /// The file that sets it.
    pub path: String,
    /// The line there.
    pub line: usize,
}

/// Why the host cannot see a namespace's mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// Which kind of reason.
    pub kind: CauseKind,
    /// The holder's unit.
    pub unit: Option<String>,
    /// The setting to change (the first of `settings`).
    pub setting: Option<String>,
    /// The file that sets it.
    pub path: Option<String>,
    /// The line there.
    pub line: Option<usize>,
    /// Propagation of /run in the holder's mount namespace.
    pub propagation: Option<Propagation>,
    /// Every setting that gives the unit its namespace, MountFlags first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<Blame>,
}

/// The reason, from the facts about the first holder.
pub fn cause(h: &HolderFacts) -> Cause {
    let mut settings = Vec::new();
    if let Some(eff) = &h.settings {
        if matches!(eff.mount_flags, MountFlags::Slave | MountFlags::Private) {
            if let Some(o) = eff.decided_by() {
                settings.push(Blame {
                    key: "MountFlags".into(),
                    value: o.value.clone(),
                    path: o.path.clone(),
                    line: o.line,
                });
            }
        }
        settings.extend(eff.namespacing.iter().map(|n| Blame {
            key: n.key.clone(),
            value: n.value.clone(),
            path: n.origin.path.clone(),
            line: n.origin.line,
        }));
    }
    let kind = if h.unit.is_some() && !settings.is_empty() {
        CauseKind::UnitSetting
    } else if h.propagation.is_some_and(Propagation::hides) {
        CauseKind::Container
    } else {
        CauseKind::Unknown
    };
    let first = settings.first();
    Cause {
        kind,
        unit: h.unit.clone(),
        setting: first.map(|b| b.key.clone()),
        path: first.map(|b| b.path.clone()),
        line: first.map(|b| b.line),
        propagation: h.propagation,
        settings,
    }
}

/// What makes the namespace reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// MountFlags alone is to blame: `dropfix fix UNIT`.
    Fix {
        /// The unit.
        unit: String,
    },
    /// Other settings: `dropfix set UNIT Section.Key=off... --restart`.
    Set {
        /// The unit.
        unit: String,
        /// `Section.Key=value` assignments that turn each setting off.
        assignments: Vec<String>,
        /// What each setting protected, for the warning.
        protected: Vec<(String, &'static str)>,
        /// MountFlags is set too: `dropfix fix UNIT` is needed as well.
        also_fix: bool,
    },
    /// A container runtime or `unshare` made the namespace: its own propagation option.
    Runtime {
        /// private or slave.
        propagation: Propagation,
    },
    /// Nothing dropfix can name.
    Unknown,
}

/// The remedy for a cause.
pub fn remedy(c: &Cause) -> Remedy {
    match (c.kind, &c.unit) {
        (CauseKind::UnitSetting, Some(unit)) => {
            let section = unit
                .rsplit_once('.')
                .and_then(|(_, t)| crate::effective::exec_section(t))
                .unwrap_or("Service");
            let others: Vec<&Blame> = c
                .settings
                .iter()
                .filter(|b| b.key != "MountFlags")
                .collect();
            let has_flags = others.len() < c.settings.len();
            if others.is_empty() {
                return Remedy::Fix { unit: unit.clone() };
            }
            Remedy::Set {
                unit: unit.clone(),
                assignments: others
                    .iter()
                    .map(|b| format!("{section}.{}={}", b.key, off_value(&b.key)))
                    .collect(),
                protected: others
                    .iter()
                    .map(|b| (format!("{}={}", b.key, b.value), protects(&b.key)))
                    .collect(),
                also_fix: has_flags,
            }
        }
        (CauseKind::Container, _) => Remedy::Runtime {
            propagation: c.propagation.unwrap_or(Propagation::Private),
        },
        _ => Remedy::Unknown,
    }
}

/// `dropfix fix UNIT` (plain `dropfix fix` for docker.service, its default).
pub fn fix_command(unit: &str) -> String {
    if unit == "docker.service" {
        "dropfix fix".into()
    } else {
        format!("dropfix fix {unit}")
    }
}

impl Remedy {
    /// The command to run as it is, if there is one.
    pub fn command(&self) -> Option<String> {
        match self {
            Remedy::Fix { unit } => Some(fix_command(unit)),
            Remedy::Set {
                unit, assignments, ..
            } => Some(format!(
                "dropfix set {unit} {} --restart",
                assignments.join(" ")
            )),
            Remedy::Runtime { .. } | Remedy::Unknown => None,
        }
    }

    /// What to do, for a person: the command's warning, or the runtime's own remedy.
    pub fn advice(&self, holder_pid: u32) -> String {
        match self {
            Remedy::Fix { unit } => fix_command(unit),
            Remedy::Set {
                unit,
                protected,
                also_fix,
                ..
            } => {
                let mut s = format!(
                    "{}; this drops what {} protected: {}",
                    self.command().unwrap_or_default(),
                    protected
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    protected
                        .iter()
                        .map(|(_, p)| *p)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                if *also_fix {
                    s.push_str(&format!("; MountFlags is set too: {}", fix_command(unit)));
                }
                s
            }
            Remedy::Runtime { propagation } => format!(
                "no unit setting hides it: pid {holder_pid} runs in a mount namespace with {} propagation (a container or unshare); mount /run/netns into it with bind-propagation=rshared (docker: --mount type=bind,source=/run/netns,target=/run/netns,bind-propagation=rshared; unshare: --propagation shared), then recreate the namespace",
                propagation.as_str()
            ),
            Remedy::Unknown => format!(
                "the mount lives only in the namespace of pid {holder_pid}: restart what holds it, or see `dropfix scan` for the setting that gives it that namespace"
            ),
        }
    }
}

/// The value that turns a namespacing setting off.
pub fn off_value(key: &str) -> &'static str {
    match key {
        "ProtectProc" => "default",
        "ProcSubset" => "all",
        // Booleans, ProtectSystem and ProtectHome take "no"; lists and paths the empty
        // assignment.
        k if crate::effective::forces_namespace(k, "yes", None)
            && !crate::effective::forces_namespace(k, "no", None) =>
        {
            "no"
        }
        _ => "",
    }
}

/// What a setting protected (systemd.exec(5)), for the warning that comes with removing it.
pub fn protects(key: &str) -> &'static str {
    match key {
        "PrivateMounts" => {
            "the service's mounts stayed out of the host's view and the host's out of its"
        }
        "PrivateTmp" => {
            "a /tmp and /var/tmp of its own; its temporary files become shared with the host"
        }
        "PrivateDevices" => "a /dev without physical devices",
        "PrivateIPC" => "its own System V IPC and POSIX message queues",
        "ProtectSystem" => "/usr, /boot (and /etc with full or strict) read-only to it",
        "ProtectHome" => "/home, /root and /run/user hidden from it or read-only",
        "ProtectKernelTunables" => "/proc/sys and /sys read-only to it",
        "ProtectKernelModules" => "no kernel module loading",
        "ProtectKernelLogs" => "no access to the kernel log",
        "ProtectControlGroups" => "/sys/fs/cgroup read-only to it",
        "ProtectProc" | "ProcSubset" => "a /proc that hides other users' processes",
        "ReadWritePaths"
        | "ReadOnlyPaths"
        | "InaccessiblePaths"
        | "ExecPaths"
        | "NoExecPaths"
        | "ReadWriteDirectories"
        | "ReadOnlyDirectories"
        | "InaccessibleDirectories" => "the paths it limits access to",
        "BindPaths" | "BindReadOnlyPaths" => "the bind mounts it gives the service",
        "TemporaryFileSystem" => "the temporary file systems it mounts over paths",
        "RootDirectory" | "RootImage" => "the separate root file system it runs in",
        _ => "the sandboxing it gave the service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::{Namespacing, Origin, Step};

    fn eff(flags: MountFlags, ns: &[(&str, &str, usize)]) -> Effective {
        Effective {
            mount_flags: flags,
            steps: if flags == MountFlags::Unset {
                vec![]
            } else {
                vec![Step {
                    origin: Origin {
                        path: "/etc/systemd/system/cni.service".into(),
                        line: 4,
                        value: flags.as_str().into(),
                    },
                    applied: true,
                }]
            },
            namespacing: ns
                .iter()
                .map(|(k, v, line)| Namespacing {
                    key: (*k).into(),
                    value: (*v).into(),
                    origin: Origin {
                        path: "/usr/lib/systemd/system/q.service".into(),
                        line: *line,
                        value: (*v).into(),
                    },
                })
                .collect(),
        }
    }

    fn holder(unit: Option<&str>, e: Option<Effective>, p: Option<Propagation>) -> HolderFacts {
        HolderFacts {
            unit: unit.map(str::to_string),
            settings: e,
            propagation: p,
        }
    }

    #[test]
    fn mountflags_alone_is_blamed_with_file_and_line_and_fixed_by_fix() {
        let c = cause(&holder(
            Some("cni.service"),
            Some(eff(MountFlags::Slave, &[])),
            Some(Propagation::Slave),
        ));
        assert_eq!(c.kind, CauseKind::UnitSetting);
        assert_eq!(c.setting.as_deref(), Some("MountFlags"));
        assert_eq!(c.path.as_deref(), Some("/etc/systemd/system/cni.service"));
        assert_eq!(c.line, Some(4));
        let r = remedy(&c);
        assert_eq!(r.command().as_deref(), Some("dropfix fix cni.service"));
    }

    #[test]
    fn private_mounts_is_turned_off_with_set_and_a_warning() {
        let c = cause(&holder(
            Some("q.service"),
            Some(eff(MountFlags::Unset, &[("PrivateMounts", "yes", 7)])),
            Some(Propagation::Slave),
        ));
        assert_eq!(c.kind, CauseKind::UnitSetting);
        assert_eq!(c.setting.as_deref(), Some("PrivateMounts"));
        assert_eq!(c.line, Some(7));
        let r = remedy(&c);
        assert_eq!(
            r.command().as_deref(),
            Some("dropfix set q.service Service.PrivateMounts=no --restart")
        );
        assert!(
            r.advice(9).contains("PrivateMounts=yes protected"),
            "{}",
            r.advice(9)
        );
    }

    #[test]
    fn every_setting_is_turned_off_and_mountflags_comes_too() {
        let c = cause(&holder(
            Some("q.service"),
            Some(eff(
                MountFlags::Slave,
                &[
                    ("PrivateTmp", "yes", 5),
                    ("ReadOnlyPaths", "/etc", 6),
                    ("ProtectSystem", "full", 8),
                ],
            )),
            None,
        ));
        assert_eq!(c.setting.as_deref(), Some("MountFlags"));
        let r = remedy(&c);
        assert_eq!(
            r.command().as_deref(),
            Some("dropfix set q.service Service.PrivateTmp=no Service.ReadOnlyPaths= Service.ProtectSystem=no --restart")
        );
        assert!(r
            .advice(1)
            .ends_with("MountFlags is set too: dropfix fix q.service"));
    }

    #[test]
    fn no_unit_setting_and_private_propagation_is_a_container_with_no_unit_change() {
        for unit in [None, Some("run-r1.service")] {
            let c = cause(&holder(
                unit,
                unit.map(|_| eff(MountFlags::Unset, &[])),
                Some(Propagation::Private),
            ));
            assert_eq!(c.kind, CauseKind::Container);
            assert_eq!(c.setting, None);
            let r = remedy(&c);
            assert_eq!(r.command(), None);
            assert!(r.advice(12).contains("rshared"), "{}", r.advice(12));
            assert!(r.advice(12).contains("pid 12"));
        }
    }

    #[test]
    fn shared_propagation_without_settings_is_unknown() {
        let c = cause(&holder(None, None, Some(Propagation::Shared)));
        assert_eq!(c.kind, CauseKind::Unknown);
        assert_eq!(remedy(&c), Remedy::Unknown);
        let c = cause(&holder(Some("x.service"), None, None));
        assert_eq!(c.kind, CauseKind::Unknown);
    }
}
