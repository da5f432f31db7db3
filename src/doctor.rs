//! Doctor: facts gathered from files, systemd and /proc -> findings, each with its evidence
//! and a one-line fix. Pure: the gathering is done by `app`.

use crate::effective::{Effective, EmptyAssignment, MountFlags};
use crate::inspect::Process;
use crate::manager::UnitState;
use crate::version::Version;
use serde::Serialize;

/// How a finding reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy.
    Ok,
    /// Something is wrong.
    Problem,
    /// Worth knowing; not a fault.
    Info,
    /// Could not be checked (and why is in the summary).
    Unchecked,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier (`mount-flags`, `mount-namespace`, `netns`, `reload-pending`, ...).
    pub id: String,
    /// Verdict.
    pub status: Status,
    /// One line for a person.
    pub summary: String,
    /// What was seen.
    pub evidence: Vec<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn finding(
    id: &str,
    status: Status,
    summary: String,
    evidence: Vec<String>,
    fix: Option<&str>,
) -> Finding {
    Finding {
        id: id.into(),
        status,
        summary,
        evidence,
        fix: fix.map(str::to_string),
    }
}

/// What the unit files say about a unit.
#[derive(Debug, Clone)]
pub struct FileFacts {
    /// Effective settings per the files.
    pub effective: Effective,
    /// Newest modification time (µs since the epoch) of the fragment, drop-ins and their dirs.
    pub newest_change_us: Option<u64>,
}

/// Everything known about one unit.
#[derive(Debug, Clone)]
pub struct UnitFacts {
    /// Unit name.
    pub unit: String,
    /// From the files (None: could not be read, reason in `files_error`).
    pub files: Option<FileFacts>,
    /// Why the files could not be read.
    pub files_error: Option<String>,
    /// From systemd (None offline).
    pub bus: Option<UnitState>,
    /// The main process's mount namespace.
    pub main_ns: Option<String>,
}

/// A namespace file checked from PID 1's view.
#[derive(Debug, Clone)]
pub struct NetnsEntry {
    /// Path as PID 1 sees it.
    pub path: String,
    /// Enterable (nsfs) or not; None when it could not be checked.
    pub nsfs: Option<bool>,
    /// Processes in namespaces where this path is a mount point.
    pub holders: Vec<Process>,
}

/// Mounts under docker's directories held by a namespace other than PID 1's.
#[derive(Debug, Clone)]
pub struct Leak {
    /// A process of that namespace.
    pub process: Process,
    /// How many mounts under docker's directories it holds.
    pub mounts: usize,
    /// Of those, how many no longer exist in PID 1's namespace or do not follow its unmounts
    /// (private copies): these keep docker's devices and namespaces busy.
    pub stale: usize,
}

/// Host-wide facts.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// systemd version.
    pub version: Option<Version>,
    /// PID 1's mount namespace (None offline or unreadable).
    pub pid1_ns: Option<String>,
    /// When systemd last loaded unit files (µs since the epoch).
    pub loaded_at_us: Option<u64>,
    /// Namespace files under docker's and iproute2's directories.
    pub netns: Vec<NetnsEntry>,
    /// Leaked mounts, one per namespace.
    pub leaks: Vec<Leak>,
    /// /run/netns already shows docker's namespaces.
    pub ip_netns_linked: bool,
    /// Checks that could not be made and why.
    pub unchecked: Vec<String>,
}

/// Findings for one unit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitDiagnosis {
    /// Unit name.
    pub unit: String,
    /// No problem found.
    pub healthy: bool,
    /// Findings.
    pub findings: Vec<Finding>,
}

/// The whole diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// "doctor".
    pub command: String,
    /// No problem found anywhere.
    pub healthy: bool,
    /// Per unit.
    pub units: Vec<UnitDiagnosis>,
    /// Host-wide findings.
    pub host: Vec<Finding>,
}

fn describe_proc(p: &Process) -> String {
    format!(
        "pid {} ({}{})",
        p.pid,
        p.comm,
        p.unit
            .as_deref()
            .map(|u| format!(", {u}"))
            .unwrap_or_default()
    )
}

/// Diagnose one unit.
pub fn diagnose_unit(u: &UnitFacts, host: &HostFacts) -> UnitDiagnosis {
    let mut f = Vec::new();
    let unit = &u.unit;
    let bus_flags = u
        .bus
        .as_ref()
        .and_then(|b| b.mount_flags)
        .and_then(MountFlags::from_bus);
    let file_flags = u.files.as_ref().map(|x| x.effective.mount_flags);

    // MountFlags, as systemd has it and as the files say.
    let mut ev = Vec::new();
    if let Some(b) = u.bus.as_ref().and_then(|b| b.mount_flags) {
        ev.push(format!(
            "systemd: Service.MountFlags={b} ({})",
            bus_flags.map_or("unknown", |x| if x == MountFlags::Unset {
                "unset"
            } else {
                x.as_str()
            })
        ));
    }
    if let Some(files) = &u.files {
        if files.effective.steps.is_empty() {
            ev.push("files: no MountFlags= assignment".into());
        }
        for s in &files.effective.steps {
            ev.push(format!(
                "files: {}:{} MountFlags={}{}",
                s.origin.path,
                s.origin.line,
                s.origin.value,
                if s.applied {
                    ""
                } else {
                    " (ignored by this systemd)"
                }
            ));
        }
    }
    if let Some(e) = &u.files_error {
        ev.push(format!("files: {e}"));
    }
    let effective = bus_flags.or(file_flags);
    match effective {
        Some(MountFlags::Unset) => f.push(finding("mount-flags", Status::Ok, "MountFlags is unset".into(), ev, None)),
        Some(v) => f.push(finding(
            "mount-flags",
            Status::Problem,
            format!("MountFlags={} gives {unit} a mount namespace of its own: its mounts never reach the host", v.as_str()),
            ev,
            Some("dropfix fix"),
        )),
        None => f.push(finding("mount-flags", Status::Unchecked, "MountFlags could not be read".into(), ev, None)),
    }

    // Has systemd loaded what is on disk?
    if let (Some(bus), Some(files)) = (&u.bus, &u.files) {
        let mut ev = Vec::new();
        if bus.need_daemon_reload {
            ev.push("systemd: NeedDaemonReload=yes".into());
        }
        if let (Some(b), Some(fl)) = (bus_flags, file_flags) {
            if b != fl {
                ev.push(format!(
                    "systemd runs MountFlags={}, the files say {}",
                    b.describe(),
                    fl.describe()
                ));
            }
        }
        if let (Some(changed), Some(loaded)) = (files.newest_change_us, host.loaded_at_us) {
            if changed > loaded {
                ev.push(format!(
                    "unit files changed {} s after systemd last loaded units",
                    (changed - loaded) / 1_000_000
                ));
            }
        }
        if ev.is_empty() {
            f.push(finding(
                "reload-pending",
                Status::Ok,
                "systemd has loaded the files on disk".into(),
                vec![],
                None,
            ));
        } else {
            f.push(finding(
                "reload-pending",
                Status::Problem,
                "systemd has not loaded the unit files on disk".into(),
                ev,
                Some("systemctl daemon-reload (dropfix fix does it)"),
            ));
        }
    }

    // Is the running process in PID 1's mount namespace?
    if let Some(bus) = &u.bus {
        let running = matches!(
            bus.active_state.as_str(),
            "active" | "activating" | "reloading"
        );
        if !running || bus.main_pid == 0 {
            f.push(finding(
                "mount-namespace",
                Status::Info,
                format!("{unit} is not running (ActiveState={})", bus.active_state),
                vec![],
                None,
            ));
        } else {
            match (&host.pid1_ns, &u.main_ns) {
                (Some(p1), Some(m)) if p1 == m => f.push(finding(
                    "mount-namespace",
                    Status::Ok,
                    format!(
                        "main process (pid {}) shares PID 1's mount namespace",
                        bus.main_pid
                    ),
                    vec![format!("PID 1: {p1}, pid {}: {m}", bus.main_pid)],
                    None,
                )),
                (Some(p1), Some(m)) => {
                    let mut why: Vec<String> = Vec::new();
                    if let Some(v) = effective.filter(|v| *v != MountFlags::Unset) {
                        why.push(format!("MountFlags={}", v.as_str()));
                    }
                    if let Some(files) = &u.files {
                        why.extend(
                            files
                                .effective
                                .namespacing
                                .iter()
                                .map(|n| format!("{}={}", n.key, n.value)),
                        );
                    }
                    if why.is_empty() {
                        why.push("it was started before the current settings: restart it".into());
                    }
                    let fix = if effective.is_some_and(|v| v != MountFlags::Unset)
                        || why[0].starts_with("it was")
                    {
                        Some("dropfix fix")
                    } else {
                        Some("remove the settings named above (dropfix set/unset) and restart")
                    };
                    f.push(finding(
                        "mount-namespace",
                        Status::Problem,
                        format!(
                            "main process (pid {}) runs in its own mount namespace: {}",
                            bus.main_pid,
                            why.join(", ")
                        ),
                        vec![format!("PID 1: {p1}, pid {}: {m}", bus.main_pid)],
                        fix,
                    ))
                }
                _ => f.push(finding(
                    "mount-namespace",
                    Status::Unchecked,
                    "mount namespaces could not be read (needs root)".into(),
                    vec![],
                    None,
                )),
            }
        }
    }

    // Where a namespace setting other than MountFlags keeps the namespace anyway.
    if let Some(files) = &u.files {
        for n in &files.effective.namespacing {
            f.push(finding(
                "sandboxing",
                Status::Info,
                format!(
                    "{}={} also gives {unit} a mount namespace of its own",
                    n.key, n.value
                ),
                vec![format!("{}:{}", n.origin.path, n.origin.line)],
                None,
            ));
        }
    }

    UnitDiagnosis {
        unit: unit.clone(),
        healthy: !f.iter().any(|x| x.status == Status::Problem),
        findings: f,
    }
}

/// Host-wide findings: netns files, leaked mounts, the version trap, ip netns.
pub fn diagnose_host(host: &HostFacts) -> Vec<Finding> {
    let mut f = Vec::new();
    for e in &host.netns {
        match e.nsfs {
            Some(true) => f.push(finding(
                "netns",
                Status::Ok,
                format!("{} can be entered from the host", e.path),
                vec!["an nsfs mount in PID 1's mount namespace".into()],
                None,
            )),
            Some(false) => {
                let mut ev = vec![
                    "a plain file in PID 1's mount namespace: `nsenter --net=` / `ip netns exec` fail with \"Invalid argument\"".to_string(),
                ];
                for h in &e.holders {
                    ev.push(format!(
                        "the mount lives in {} of {}",
                        h.mnt_ns,
                        describe_proc(h)
                    ));
                }
                if e.holders.is_empty() {
                    ev.push("no process holds a mount there: a stale file".into());
                }
                f.push(finding(
                    "netns",
                    Status::Problem,
                    format!("{} cannot be entered from the host", e.path),
                    ev,
                    Some(if e.holders.is_empty() {
                        "remove the stale file"
                    } else {
                        "dropfix fix"
                    }),
                ))
            }
            None => f.push(finding(
                "netns",
                Status::Unchecked,
                format!("{} could not be checked", e.path),
                vec![],
                None,
            )),
        }
    }
    let mut by_unit: Vec<(String, usize, usize, Vec<String>)> = Vec::new();
    for l in &host.leaks {
        let key = l.process.unit.clone().unwrap_or_else(|| "(no unit)".into());
        let line = format!(
            "{} in {}: {} mount(s), {} stale or private",
            describe_proc(&l.process),
            l.process.mnt_ns,
            l.mounts,
            l.stale
        );
        match by_unit.iter_mut().find(|(u, ..)| *u == key) {
            Some(e) => {
                e.1 += l.mounts;
                e.2 += l.stale;
                e.3.push(line);
            }
            None => by_unit.push((key, l.mounts, l.stale, vec![line])),
        }
    }
    for (unit, n, stale, ev) in by_unit {
        if stale > 0 {
            f.push(finding(
                "leaked-mounts",
                Status::Problem,
                format!("{unit} holds {stale} of docker's mounts in its own mount namespace that the host no longer has or cannot unmount there (\"device or resource busy\" when docker removes them)"),
                ev,
                Some(&format!("restart {unit}; to stop it copying docker's mounts, start it before docker or drop its private namespace settings")),
            ));
        } else {
            f.push(finding(
                "leaked-mounts",
                Status::Info,
                format!("{unit} holds {n} copy(ies) of docker's mounts in its own mount namespace; they follow the host's unmounts"),
                ev,
                None,
            ));
        }
    }
    match &host.version {
        Some(v) if EmptyAssignment::for_version(v.major) == EmptyAssignment::Ignored => f.push(finding(
            "systemd-version",
            Status::Info,
            format!("systemd {} ignores an empty MountFlags= in a drop-in: only a full copy of the unit can unset it (dropfix fix chooses that)", v.major),
            vec![format!("version from {}", v.source)],
            None,
        )),
        Some(v) => f.push(finding(
            "systemd-version",
            Status::Ok,
            format!("systemd {}: an empty MountFlags= in a drop-in unsets it (dropfix fix writes a drop-in)", v.major),
            vec![format!("version from {}", v.source)],
            None,
        )),
        None => f.push(finding(
            "systemd-version",
            Status::Unchecked,
            "systemd's version is unknown: dropfix fix would use a full copy, which works on every version".into(),
            vec![],
            None,
        )),
    }
    let docker_ns = host
        .netns
        .iter()
        .any(|e| e.path.starts_with("/run/docker/netns/"));
    if docker_ns && !host.ip_netns_linked {
        f.push(finding(
            "ip-netns",
            Status::Info,
            "`ip netns list` does not show docker's namespaces".into(),
            vec!["/run/netns is not a link to /run/docker/netns".into()],
            Some("dropfix fix --link-ip-netns"),
        ));
    }
    for u in &host.unchecked {
        f.push(finding(
            "unchecked",
            Status::Unchecked,
            u.clone(),
            vec![],
            None,
        ));
    }
    f
}

/// Put it together.
pub fn diagnose(units: &[UnitFacts], host: &HostFacts) -> Diagnosis {
    let units: Vec<UnitDiagnosis> = units.iter().map(|u| diagnose_unit(u, host)).collect();
    let host_findings = diagnose_host(host);
    Diagnosis {
        command: "doctor".into(),
        healthy: units.iter().all(|u| u.healthy)
            && !host_findings.iter().any(|f| f.status == Status::Problem),
        units,
        host: host_findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::{Origin, Step};

    fn eff(flags: MountFlags) -> Effective {
        Effective {
            mount_flags: flags,
            steps: vec![Step {
                origin: Origin {
                    path: "/usr/lib/systemd/system/docker.service".into(),
                    line: 9,
                    value: flags.as_str().into(),
                },
                applied: true,
            }],
            namespacing: vec![],
        }
    }

    fn bus(flags: u64, pid: u32) -> UnitState {
        UnitState {
            id: "docker.service".into(),
            load_state: crate::manager::LoadState::Loaded,
            active_state: crate::manager::ActiveState::Active,
            mount_flags: Some(flags),
            main_pid: pid,
            ..UnitState::default()
        }
    }

    #[test]
    fn slave_with_process_in_own_namespace_is_a_problem_naming_mountflags() {
        let u = UnitFacts {
            unit: "docker.service".into(),
            files: Some(FileFacts {
                effective: eff(MountFlags::Slave),
                newest_change_us: Some(1),
            }),
            files_error: None,
            bus: Some(bus(524_288, 42)),
            main_ns: Some("mnt:[2]".into()),
        };
        let host = HostFacts {
            pid1_ns: Some("mnt:[1]".into()),
            loaded_at_us: Some(5),
            ..HostFacts::default()
        };
        let d = diagnose_unit(&u, &host);
        assert!(!d.healthy);
        let mf = d.findings.iter().find(|f| f.id == "mount-flags").unwrap();
        assert_eq!(mf.status, Status::Problem);
        assert!(mf.evidence.iter().any(|e| e.contains("docker.service:9")));
        let ns = d
            .findings
            .iter()
            .find(|f| f.id == "mount-namespace")
            .unwrap();
        assert!(ns.summary.contains("MountFlags=slave"), "{}", ns.summary);
    }

    #[test]
    fn files_newer_than_the_last_load_mean_reload_pending() {
        let u = UnitFacts {
            unit: "docker.service".into(),
            files: Some(FileFacts {
                effective: eff(MountFlags::Unset),
                newest_change_us: Some(10_000_000),
            }),
            files_error: None,
            bus: Some(bus(524_288, 42)),
            main_ns: Some("mnt:[1]".into()),
        };
        let host = HostFacts {
            pid1_ns: Some("mnt:[1]".into()),
            loaded_at_us: Some(1),
            ..HostFacts::default()
        };
        let d = diagnose_unit(&u, &host);
        let r = d
            .findings
            .iter()
            .find(|f| f.id == "reload-pending")
            .unwrap();
        assert_eq!(r.status, Status::Problem);
        assert_eq!(r.evidence.len(), 2);
    }

    #[test]
    fn plain_netns_file_names_its_holder_and_leaks_group_by_unit() {
        let p = Process {
            pid: 7,
            comm: "dockerd".into(),
            mnt_ns: "mnt:[2]".into(),
            unit: Some("docker.service".into()),
        };
        let q = Process {
            pid: 9,
            comm: "sleep".into(),
            mnt_ns: "mnt:[3]".into(),
            unit: Some("leak.service".into()),
        };
        let host = HostFacts {
            netns: vec![NetnsEntry {
                path: "/run/docker/netns/abc".into(),
                nsfs: Some(false),
                holders: vec![p],
            }],
            leaks: vec![
                Leak {
                    process: q.clone(),
                    mounts: 2,
                    stale: 1,
                },
                Leak {
                    process: q,
                    mounts: 1,
                    stale: 0,
                },
            ],
            ..HostFacts::default()
        };
        let f = diagnose_host(&host);
        let n = f.iter().find(|x| x.id == "netns").unwrap();
        assert_eq!(n.status, Status::Problem);
        assert!(n
            .evidence
            .iter()
            .any(|e| e.contains("pid 7 (dockerd, docker.service)")));
        let l: Vec<_> = f.iter().filter(|x| x.id == "leaked-mounts").collect();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].status, Status::Problem);
        assert!(
            l[0].summary
                .starts_with("leak.service holds 1 of docker's mounts"),
            "{}",
            l[0].summary
        );
        assert!(f.iter().any(|x| x.id == "ip-netns"));
    }
}
