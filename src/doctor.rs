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

impl Status {
    /// Every status, in the order metrics list them.
    pub const ALL: [Status; 4] = [Status::Ok, Status::Problem, Status::Info, Status::Unchecked];

    /// The status as in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Info => "info",
            Status::Unchecked => "unchecked",
        }
    }
}

/// What a finding is about: stable identifiers for scripts and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingId {
    /// MountFlags as systemd runs it and as the files say.
    MountFlags,
    /// Whether systemd has loaded the files on disk.
    ReloadPending,
    /// Whether the main process shares PID 1's mount namespace.
    MountNamespace,
    /// The main process runs a configuration older than the one loaded: a restart was left.
    RestartPending,
    /// systemd cannot load the unit (its fragment has an error), or its files could not be read.
    UnitFiles,
    /// A drop-in systemd stops reading at a bad line: the lines after it do not apply.
    PartialDropin,
    /// Another setting gives the unit a mount namespace of its own.
    Sandboxing,
    /// One network-namespace file, from PID 1's view.
    Netns,
    /// Docker's mounts held in another service's namespace.
    LeakedMounts,
    /// The systemd version's empty-MountFlags rule.
    SystemdVersion,
    /// Whether `ip netns` sees docker's namespaces.
    IpNetns,
    /// dropfix's copy of the unit was made from a vendor file that has changed since.
    StaleCopy,
    /// dropfix's copy of the unit is no longer needed on this systemd (a drop-in would do,
    /// and would let vendor changes through).
    CopyNotNeeded,
    /// A copy of the unit in /etc/systemd/system that dropfix did not make hides the vendor
    /// file.
    HandMadeCopy,
    /// Something could not be checked.
    Unchecked,
}

impl FindingId {
    /// The identifier as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingId::MountFlags => "mount-flags",
            FindingId::ReloadPending => "reload-pending",
            FindingId::MountNamespace => "mount-namespace",
            FindingId::RestartPending => "restart-pending",
            FindingId::UnitFiles => "unit-files",
            FindingId::PartialDropin => "partial-dropin",
            FindingId::Sandboxing => "sandboxing",
            FindingId::Netns => "netns",
            FindingId::LeakedMounts => "leaked-mounts",
            FindingId::SystemdVersion => "systemd-version",
            FindingId::IpNetns => "ip-netns",
            FindingId::StaleCopy => "stale-copy",
            FindingId::CopyNotNeeded => "copy-not-needed",
            FindingId::HandMadeCopy => "hand-made-copy",
            FindingId::Unchecked => "unchecked",
        }
    }
}

impl PartialEq<&str> for FindingId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier.
    pub id: FindingId,
    /// Verdict.
    pub status: Status,
    /// One line for a person.
    pub summary: String,
    /// What was seen.
    pub evidence: Vec<String>,
    /// What to do about it, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The command that helps, to run as it is (null when none does).
    pub command: Option<String>,
    /// For `netns` findings: the entry, who holds it in which mount namespace, and its
    /// container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<crate::netns::Entry>,
    /// For a `netns` entry the host cannot enter: why its holder's mount namespace hides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::why::Cause>,
    /// For copy findings: a unified diff (`stale-copy`: the vendor file's own change since the
    /// copy was made; `hand-made-copy`: the vendor file -> the copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The container whose restart `command` is, to restart several in one command.
    #[serde(skip)]
    pub restart_container: Option<String>,
}

fn finding(
    id: FindingId,
    status: Status,
    summary: String,
    evidence: Vec<String>,
    fix: Option<&str>,
) -> Finding {
    Finding {
        id,
        status,
        summary,
        evidence,
        fix: fix.map(str::to_string),
        command: None,
        netns: None,
        cause: None,
        diff: None,
        restart_container: None,
    }
}

/// A finding whose fix is a command to run.
fn with_command(mut f: Finding, command: impl Into<String>) -> Finding {
    let c = command.into();
    f.fix.get_or_insert_with(|| c.clone());
    f.command = Some(c);
    f
}

/// What the unit files say about a unit.
#[derive(Debug, Clone)]
pub struct FileFacts {
    /// Effective settings per the files.
    pub effective: Effective,
    /// Newest modification time (µs since the epoch) of the fragment, drop-ins and their dirs.
    pub newest_change_us: Option<u64>,
    /// Drop-ins systemd reads only in part (it stops at a bad line).
    pub partial: Vec<crate::discover::Partial>,
    /// The fragment is a copy in /etc/systemd/system that hides a vendor file.
    pub copy: Option<CopyCheck>,
}

/// A copy of the unit in /etc/systemd/system and the vendor file it hides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCheck {
    /// The copy.
    pub path: String,
    /// The vendor file it hides.
    pub vendor_path: String,
    /// Whose it is, and what follows.
    pub state: CopyState,
}

/// What is known about a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    /// dropfix made it.
    Own {
        /// Whether the vendor file changed since.
        freshness: crate::update::Freshness,
        /// dropfix chose the copy and this systemd no longer needs it: `Some(version)`.
        not_needed: Option<u32>,
    },
    /// Someone else made it.
    Hand {
        /// Vendor file -> copy, unified.
        diff: String,
        /// Ok: `dropfix fix --replace-copy` can replace it with drop-ins; Err: why not.
        replaceable: Result<(), Vec<String>>,
    },
}

/// Findings about a copy of the unit.
fn copy_findings(unit: &str, c: &CopyCheck) -> Vec<Finding> {
    let fix_cmd = if unit == "docker.service" {
        "dropfix fix".to_string()
    } else {
        format!("dropfix fix {unit}")
    };
    let diff_lines = |d: &str| d.lines().map(str::to_string).collect::<Vec<_>>();
    let mut out = Vec::new();
    match &c.state {
        CopyState::Own {
            freshness,
            not_needed,
        } => {
            if let crate::update::Freshness::Stale { vendor_diff } = freshness {
                let mut f = with_command(
                    finding(
                        FindingId::StaleCopy,
                        Status::Problem,
                        format!(
                            "{} changed since dropfix copied it to {}: {unit} still runs the old unit",
                            c.vendor_path, c.path
                        ),
                        match vendor_diff {
                            Some(d) => diff_lines(d),
                            None => vec![
                                "an older dropfix made the copy and did not record the vendor text it started from".into(),
                            ],
                        },
                        None,
                    ),
                    fix_cmd.clone(),
                );
                f.diff = vendor_diff.clone();
                out.push(f);
            }
            if let Some(v) = not_needed {
                out.push(with_command(
                    finding(
                        FindingId::CopyNotNeeded,
                        Status::Problem,
                        format!(
                            "systemd {v} takes an empty MountFlags= in a drop-in: dropfix's copy {} is no longer needed, and it hides every vendor change to {}",
                            c.path, c.vendor_path
                        ),
                        vec![format!(
                            "dropfix chose the copy for an older systemd; `dropfix fix` replaces it with drop-ins"
                        )],
                        None,
                    ),
                    fix_cmd,
                ));
            }
        }
        CopyState::Hand { diff, replaceable } => {
            let summary = format!(
                "{} is a copy of {} that dropfix did not make: vendor changes to {} do not apply",
                c.path, c.vendor_path, c.vendor_path
            );
            let mut f = match replaceable {
                Ok(()) => with_command(
                    finding(FindingId::HandMadeCopy, Status::Info, summary, diff_lines(diff), None),
                    format!("{fix_cmd} --replace-copy"),
                ),
                Err(why) => finding(
                    FindingId::HandMadeCopy,
                    Status::Info,
                    summary,
                    diff_lines(diff),
                    Some(&format!(
                        "drop-ins cannot replace it exactly ({}): merge vendor changes into it by hand",
                        why.join("; ")
                    )),
                ),
            };
            f.diff = Some(diff.clone());
            out.push(f);
        }
    }
    out
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
    /// Namespace files under docker's and iproute2's directories, classified.
    pub netns: Vec<crate::netns::Entry>,
    /// Why each held entry (by path) is hidden from the host.
    pub causes: std::collections::BTreeMap<String, crate::why::Cause>,
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
    /// The commands that help with the problems found, in order, each once.
    pub commands: Vec<String>,
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
        // A unit whose files could not be read is never healthy.
        f.push(finding(
            FindingId::UnitFiles,
            Status::Problem,
            e.clone(),
            vec![],
            Some("correct the file and line named, then run dropfix again"),
        ));
    }
    for p in u.files.iter().flat_map(|x| x.partial.iter()) {
        f.push(finding(
            FindingId::PartialDropin,
            Status::Problem,
            format!(
                "systemd stops reading {} at line {} ({}): the lines after it do not apply",
                p.path, p.line, p.reason
            ),
            vec![
                p.to_string(),
                "systemd never records this drop-in's modification time, so NeedDaemonReload stays yes after every daemon-reload until the line is corrected".into(),
            ],
            Some(&format!("correct line {} of {}, then systemctl daemon-reload", p.line, p.path)),
        ));
    }
    let effective = bus_flags.or(file_flags);
    match effective {
        Some(MountFlags::Unset) => f.push(finding(FindingId::MountFlags, Status::Ok, "MountFlags is unset".into(), ev, None)),
        Some(v) => f.push(with_command(
            finding(
                FindingId::MountFlags,
                Status::Problem,
                format!("MountFlags={} gives {unit} a mount namespace of its own: its mounts never reach the host", v.as_str()),
                ev,
                None,
            ),
            if unit == "docker.service" {
                "dropfix fix".to_string()
            } else {
                format!("dropfix fix {unit}")
            },
        )),
        None => f.push(finding(FindingId::MountFlags, Status::Unchecked, "MountFlags could not be read".into(), ev, None)),
    }

    // Has systemd loaded what is on disk?
    if let (Some(bus), Some(files)) = (&u.bus, &u.files) {
        let mut ev = Vec::new();
        // A drop-in systemd reads only in part keeps NeedDaemonReload at yes for ever: that is
        // the partial-dropin finding, not a pending reload.
        if bus.need_daemon_reload && files.partial.is_empty() {
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
                FindingId::ReloadPending,
                Status::Ok,
                "systemd has loaded the files on disk".into(),
                vec![],
                None,
            ));
        } else {
            f.push(finding(
                FindingId::ReloadPending,
                Status::Problem,
                "systemd has not loaded the unit files on disk".into(),
                ev,
                Some("systemctl daemon-reload (dropfix fix does it)"),
            ));
        }
    }

    // Is the running process in PID 1's mount namespace, as the loaded settings say it should?
    if let Some(bus) = &u.bus {
        let namespacing: Vec<String> = u
            .files
            .iter()
            .flat_map(|x| x.effective.namespacing.iter())
            .map(|n| format!("{}={}", n.key, n.value))
            .collect();
        if !bus.is_running() || bus.main_pid == 0 {
            f.push(finding(
                FindingId::MountNamespace,
                Status::Info,
                format!("{unit} is not running (ActiveState={})", bus.active_state),
                vec![],
                None,
            ));
        } else {
            match (&host.pid1_ns, &u.main_ns) {
                (Some(p1), Some(m)) if p1 == m => {
                    f.push(finding(
                        FindingId::MountNamespace,
                        Status::Ok,
                        format!(
                            "main process (pid {}) shares PID 1's mount namespace",
                            bus.main_pid
                        ),
                        vec![format!("PID 1: {p1}, pid {}: {m}", bus.main_pid)],
                        None,
                    ));
                    if let Some(v) = bus_flags.filter(|v| *v != MountFlags::Unset) {
                        f.push(with_command(
                            finding(
                                FindingId::RestartPending,
                                Status::Info,
                                format!(
                                    "systemd has MountFlags={} loaded for {unit}, but its main process (pid {}) still runs in PID 1's namespace: it started before that configuration was loaded (a revert whose restart was left for later)",
                                    v.as_str(),
                                    bus.main_pid
                                ),
                                vec![format!("PID 1: {p1}, pid {}: {m}", bus.main_pid)],
                                None,
                            ),
                            "dropfix revert --yes",
                        ));
                    }
                }
                (Some(p1), Some(m)) => {
                    let ev = vec![format!("PID 1: {p1}, pid {}: {m}", bus.main_pid)];
                    if let Some(v) = effective.filter(|v| *v != MountFlags::Unset) {
                        f.push(with_command(
                            finding(
                                FindingId::MountNamespace,
                                Status::Problem,
                                format!(
                                    "main process (pid {}) runs in its own mount namespace: MountFlags={}",
                                    bus.main_pid,
                                    v.as_str()
                                ),
                                ev,
                                None,
                            ),
                            "dropfix fix",
                        ));
                    } else if !namespacing.is_empty() {
                        f.push(finding(
                            FindingId::MountNamespace,
                            Status::Problem,
                            format!(
                                "main process (pid {}) runs in its own mount namespace: {}",
                                bus.main_pid,
                                namespacing.join(", ")
                            ),
                            ev,
                            Some("remove the settings named above (dropfix set/unset) and restart"),
                        ));
                    } else {
                        f.push(with_command(
                            finding(
                                FindingId::RestartPending,
                                Status::Problem,
                                format!(
                                    "main process (pid {}) runs in its own mount namespace although systemd has MountFlags unset loaded: it started before the fix was loaded, and its restart was left for later",
                                    bus.main_pid
                                ),
                                ev,
                                None,
                            ),
                            "dropfix fix --yes",
                        ));
                    }
                }
                _ => f.push(finding(
                    FindingId::MountNamespace,
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
                FindingId::Sandboxing,
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

    if let Some(c) = u.files.as_ref().and_then(|x| x.copy.as_ref()) {
        f.extend(copy_findings(unit, c));
    }

    UnitDiagnosis {
        unit: unit.clone(),
        healthy: !f.iter().any(|x| x.status == Status::Problem),
        findings: f,
    }
}

/// The cause in a few words, for the summary.
fn cause_line(c: &crate::why::Cause) -> String {
    use crate::why::CauseKind;
    match (c.kind, c.settings.first()) {
        (CauseKind::UnitSetting, Some(b)) => format!(
            "{} has a mount namespace of its own from {}={} ({}:{})",
            c.unit.as_deref().unwrap_or("its unit"),
            b.key,
            b.value,
            b.path,
            b.line
        ),
        (CauseKind::Container, _) => format!(
            "it is mounted in a mount namespace with {} propagation that no unit setting made (a container or unshare)",
            c.propagation.map_or("private", |p| p.as_str())
        ),
        _ => "the mount lives only in another mount namespace".into(),
    }
}

/// Every setting behind a cause, with file:line, and the propagation seen.
fn cause_evidence(c: &crate::why::Cause) -> Vec<String> {
    let mut ev: Vec<String> = c
        .settings
        .iter()
        .map(|b| {
            format!(
                "{}: {}={} at {}:{}",
                c.unit.as_deref().unwrap_or("unit"),
                b.key,
                b.value,
                b.path,
                b.line
            )
        })
        .collect();
    if let Some(p) = c.propagation {
        ev.push(format!(
            "/run in the holder's mount namespace: {} propagation",
            p.as_str()
        ));
    }
    ev
}

/// `doctor --netns PATH...`: one finding per path asked about. A path that cannot be entered
/// is a problem here, a stale leftover included: the question was whether it can be entered.
pub fn explain(
    asked: &[crate::netns::Asked],
    causes: &std::collections::BTreeMap<String, crate::why::Cause>,
) -> Diagnosis {
    use crate::netns::{Asked, Class};
    let host: Vec<Finding> = asked
        .iter()
        .map(|a| match a {
            Asked::Entry(e) => {
                let mut f = netns_finding(e, &[], causes);
                if e.class == Class::Stale {
                    f.status = Status::Problem;
                    f.summary = format!(
                        "{} cannot be entered: a plain file no mount namespace has a namespace mounted on (the namespace is gone)",
                        e.path
                    );
                    f.fix = Some("nothing holds it: whatever made it must make the namespace again (`ip netns delete NAME` removes the leftover)".into());
                }
                f
            }
            Asked::Missing(p) => finding(
                FindingId::Netns,
                Status::Unchecked,
                format!("{p} does not exist"),
                vec![],
                None,
            ),
            Asked::NotNetns(p) => finding(
                FindingId::Netns,
                Status::Unchecked,
                format!(
                    "{p} is not a network-namespace file: neither an nsfs mount nor the empty file one is mounted on"
                ),
                vec![],
                None,
            ),
        })
        .collect();
    let mut commands: Vec<String> = Vec::new();
    for c in host
        .iter()
        .filter(|f| f.status == Status::Problem)
        .filter_map(|f| f.command.clone())
    {
        if !commands.contains(&c) {
            commands.push(c);
        }
    }
    Diagnosis {
        command: "doctor".into(),
        healthy: host.iter().all(|f| f.status == Status::Ok),
        units: vec![],
        host,
        commands,
    }
}

/// One network-namespace file: enterable, a stale leftover, or held in another mount
/// namespace, with the command that makes it reachable.
fn netns_finding(
    e: &crate::netns::Entry,
    fixable_ns: &[String],
    causes: &std::collections::BTreeMap<String, crate::why::Cause>,
) -> Finding {
    use crate::netns::Class;
    let mut f = match e.class {
        Class::Enterable => finding(
            FindingId::Netns,
            Status::Ok,
            format!("{} can be entered from the host", e.path),
            vec!["an nsfs mount in PID 1's mount namespace".into()],
            None,
        ),
        Class::Stale => finding(
            FindingId::Netns,
            Status::Info,
            format!(
                "{} is a stale leftover: no process holds it (a stopped container's sandbox); harmless",
                e.path
            ),
            vec!["a plain file in PID 1's mount namespace, mounted in no other".into()],
            None,
        ),
        Class::Held => {
            let mut ev = vec![
                "a plain file in PID 1's mount namespace: `nsenter --net=` / `ip netns exec` fail with \"Invalid argument\"".to_string(),
            ];
            for h in &e.holders {
                ev.push(format!(
                    "the mount lives in {} of pid {} ({}{})",
                    h.mount_ns,
                    h.pid,
                    h.command,
                    h.unit.as_deref().map(|u| format!(", {u}")).unwrap_or_default()
                ));
            }
            if e.holder_count > e.holders.len() {
                ev.push(format!(
                    "and {} more process(es)",
                    e.holder_count - e.holders.len()
                ));
            }
            if let Some(c) = &e.container {
                ev.push(format!("container {} ({})", c.name, c.id));
            }
            let cause = causes.get(&e.path);
            if let Some(c) = cause {
                ev.extend(cause_evidence(c));
            }
            let summary = match cause {
                Some(c) => format!("{} cannot be entered from the host: {}", e.path, cause_line(c)),
                None => format!("{} cannot be entered from the host", e.path),
            };
            let held_by_stuck_unit = e
                .holders
                .iter()
                .any(|h| fixable_ns.contains(&h.mount_ns));
            let mut f = finding(FindingId::Netns, Status::Problem, summary, ev, None);
            f.cause = cause.cloned();
            let pid = e.holders.first().map_or(0, |h| h.pid);
            if held_by_stuck_unit {
                // The service itself still runs in its own namespace: fixing it is what helps.
                let unit = e.holders.iter().find(|h| fixable_ns.contains(&h.mount_ns));
                let unit = unit.and_then(|h| h.unit.as_deref()).unwrap_or("docker.service");
                with_command(f, crate::why::fix_command(unit))
            } else if let Some(c) = &e.container {
                // The service is fixed; the container's processes kept the old namespace
                // (live-restore): restarting the container makes a new, reachable one.
                let mut f = with_command(f, format!("docker restart {}", c.name));
                f.restart_container = Some(c.name.clone());
                f
            } else {
                let r = cause.map_or(crate::why::Remedy::Unknown, crate::why::remedy);
                f.fix = Some(r.advice(pid));
                f.command = r.command();
                f
            }
        }
    };
    f.netns = Some(e.clone());
    f
}

/// Host-wide findings: netns files, leaked mounts, the version trap, ip netns.
/// `fixable_ns` are the mount namespaces of the examined units' main processes that MountFlags
/// gives them: a netns held there is made reachable by `dropfix fix`.
pub fn diagnose_host(host: &HostFacts, fixable_ns: &[String]) -> Vec<Finding> {
    let mut f = Vec::new();
    for e in &host.netns {
        f.push(netns_finding(e, fixable_ns, &host.causes));
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
                FindingId::LeakedMounts,
                Status::Problem,
                format!("{unit} holds {stale} of docker's mounts in its own mount namespace that the host no longer has or cannot unmount there (\"device or resource busy\" when docker removes them)"),
                ev,
                Some(&format!("restart {unit}; to stop it copying docker's mounts, start it before docker or drop its private namespace settings")),
            ));
        } else {
            f.push(finding(
                FindingId::LeakedMounts,
                Status::Info,
                format!("{unit} holds {n} copy(ies) of docker's mounts in its own mount namespace; they follow the host's unmounts"),
                ev,
                None,
            ));
        }
    }
    match &host.version {
        Some(v) if EmptyAssignment::for_version(v.major) == EmptyAssignment::Ignored => f.push(finding(
            FindingId::SystemdVersion,
            Status::Info,
            format!("systemd {} ignores an empty MountFlags= in a drop-in: only a full copy of the unit can unset it (dropfix fix chooses that)", v.major),
            vec![format!("version from {}", v.source)],
            None,
        )),
        Some(v) => f.push(finding(
            FindingId::SystemdVersion,
            Status::Ok,
            format!("systemd {}: an empty MountFlags= in a drop-in unsets it (dropfix fix writes a drop-in)", v.major),
            vec![format!("version from {}", v.source)],
            None,
        )),
        None => f.push(finding(
            FindingId::SystemdVersion,
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
            FindingId::IpNetns,
            Status::Info,
            "`ip netns list` does not show docker's namespaces".into(),
            vec!["/run/netns is not a link to /run/docker/netns".into()],
            Some("dropfix fix --link-ip-netns"),
        ));
    }
    for u in &host.unchecked {
        f.push(finding(
            FindingId::Unchecked,
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
    let fixable_ns: Vec<String> = units
        .iter()
        .filter(|u| {
            u.bus
                .as_ref()
                .and_then(|b| b.mount_flags)
                .and_then(MountFlags::from_bus)
                .is_some_and(|f| f != MountFlags::Unset)
        })
        .filter_map(|u| u.main_ns.clone())
        .filter(|ns| host.pid1_ns.as_ref() != Some(ns))
        .collect();
    let units: Vec<UnitDiagnosis> = units.iter().map(|u| diagnose_unit(u, host)).collect();
    let host_findings = diagnose_host(host, &fixable_ns);
    let mut commands: Vec<String> = Vec::new();
    let mut containers: Vec<String> = Vec::new();
    for f in units
        .iter()
        .flat_map(|u| u.findings.iter())
        .chain(host_findings.iter())
        .filter(|f| f.status == Status::Problem)
    {
        match (&f.restart_container, &f.command) {
            // Several containers to restart: one command for them all, after the others.
            (Some(name), _) if !containers.contains(name) => containers.push(name.clone()),
            (Some(_), _) => {}
            (None, Some(c)) if !commands.contains(c) => commands.push(c.clone()),
            (None, _) => {}
        }
    }
    if !containers.is_empty() {
        containers.sort();
        commands.push(format!("docker restart {}", containers.join(" ")));
    }
    Diagnosis {
        command: "doctor".into(),
        healthy: units.iter().all(|u| u.healthy)
            && !host_findings.iter().any(|f| f.status == Status::Problem),
        units,
        host: host_findings,
        commands,
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
                partial: vec![],
                copy: None,
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
                partial: vec![],
                copy: None,
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
        let holder = |p: &Process| crate::netns::Holder {
            pid: p.pid,
            command: p.comm.clone(),
            mount_ns: p.mnt_ns.clone(),
            unit: p.unit.clone(),
        };
        let host = HostFacts {
            netns: vec![crate::netns::Entry {
                path: "/run/docker/netns/abc".into(),
                class: crate::netns::Class::Held,
                holders: vec![holder(&p)],
                holder_count: 1,
                container: None,
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
        // dockerd (mnt:[2]) still runs with MountFlags: fixing it is what helps.
        let f = diagnose_host(&host, &["mnt:[2]".to_string()]);
        let n = f.iter().find(|x| x.id == "netns").unwrap();
        assert_eq!(n.status, Status::Problem);
        assert_eq!(n.command.as_deref(), Some("dropfix fix"));
        assert!(n
            .evidence
            .iter()
            .any(|e| e.contains("pid 7 (dockerd, docker.service)")));
        assert_eq!(n.netns.as_ref().unwrap().holders[0].pid, 7);
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

    fn held(path: &str, pid: u32, ns: &str, container: Option<&str>) -> crate::netns::Entry {
        crate::netns::Entry {
            path: path.into(),
            class: crate::netns::Class::Held,
            holders: vec![crate::netns::Holder {
                pid,
                command: "containerd-shim".into(),
                mount_ns: ns.into(),
                unit: Some("docker.service".into()),
            }],
            holder_count: 1,
            container: container.map(|n| crate::netns::ContainerRef {
                id: format!("{n}0123456789abcdef"),
                name: n.into(),
            }),
        }
    }

    #[test]
    fn live_restore_leftovers_advise_docker_restart_never_dropfix_fix() {
        // docker.service is fixed (MountFlags unset, in PID 1's namespace); two shims still
        // hold their containers' namespaces in the old one.
        let u = UnitFacts {
            unit: "docker.service".into(),
            files: Some(FileFacts {
                effective: eff(MountFlags::Unset),
                newest_change_us: Some(1),
                partial: vec![],
                copy: None,
            }),
            files_error: None,
            bus: Some(bus(0, 42)),
            main_ns: Some("mnt:[1]".into()),
        };
        let host = HostFacts {
            pid1_ns: Some("mnt:[1]".into()),
            loaded_at_us: Some(5),
            netns: vec![
                held("/run/docker/netns/a", 7, "mnt:[2]", Some("c1")),
                held("/run/docker/netns/b", 8, "mnt:[2]", Some("c2")),
                crate::netns::Entry {
                    path: "/run/docker/netns/old".into(),
                    class: crate::netns::Class::Stale,
                    holders: vec![],
                    holder_count: 0,
                    container: None,
                },
            ],
            ip_netns_linked: true,
            ..HostFacts::default()
        };
        let d = diagnose(std::slice::from_ref(&u), &host);
        assert!(!d.healthy);
        let nets: Vec<&Finding> = d.host.iter().filter(|f| f.id == "netns").collect();
        assert_eq!(nets[0].command.as_deref(), Some("docker restart c1"));
        assert_eq!(nets[1].command.as_deref(), Some("docker restart c2"));
        assert_eq!(
            nets[2].status,
            Status::Info,
            "a stale leftover is no problem"
        );
        assert_eq!(d.commands, ["docker restart c1 c2"]);
        assert!(!d.commands.iter().any(|c| c.starts_with("dropfix")));
        // Sandbox ids are random: the names come out sorted whatever order the entries have.
        let mut host = host;
        host.netns.swap(0, 1);
        let d = diagnose(&[u], &host);
        assert_eq!(d.commands, ["docker restart c1 c2"]);
    }

    #[test]
    fn a_process_older_than_the_loaded_fix_is_a_pending_restart() {
        let u = UnitFacts {
            unit: "docker.service".into(),
            files: Some(FileFacts {
                effective: eff(MountFlags::Unset),
                newest_change_us: Some(1),
                partial: vec![],
                copy: None,
            }),
            files_error: None,
            bus: Some(bus(0, 42)),
            main_ns: Some("mnt:[2]".into()),
        };
        let host = HostFacts {
            pid1_ns: Some("mnt:[1]".into()),
            loaded_at_us: Some(5),
            ..HostFacts::default()
        };
        let d = diagnose(&[u], &host);
        assert!(!d.healthy);
        let r = d.units[0]
            .findings
            .iter()
            .find(|f| f.id == "restart-pending")
            .unwrap();
        assert_eq!(r.status, Status::Problem);
        assert_eq!(r.command.as_deref(), Some("dropfix fix --yes"));
    }
}
