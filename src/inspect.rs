//! Inspect a live host through /proc: processes, their mount namespaces, units and mounts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One process, as much as could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// PID.
    pub pid: u32,
    /// Short command name (`comm`).
    pub comm: String,
    /// Mount namespace, e.g. `mnt:[4026531841]`.
    pub mnt_ns: String,
    /// systemd unit from the process's cgroup, when it has one.
    pub unit: Option<String>,
}

/// A view of /proc (normally `/proc`; tests may point elsewhere).
#[derive(Debug, Clone)]
pub struct Proc {
    root: PathBuf,
}

impl Default for Proc {
    fn default() -> Self {
        Proc {
            root: PathBuf::from("/proc"),
        }
    }
}

impl Proc {
    /// /proc itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// The directory it reads.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Every process whose mount namespace could be read (needs root for others' processes).
    /// The second value counts the processes that could not be read.
    pub fn processes(&self) -> (Vec<Process>, usize) {
        let mut out = Vec::new();
        let mut unreadable = 0;
        let Ok(rd) = fs::read_dir(&self.root) else {
            return (out, 0);
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let dir = e.path();
            let Ok(ns) = fs::read_link(dir.join("ns/mnt")) else {
                unreadable += 1;
                continue;
            };
            let comm = fs::read_to_string(dir.join("comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            let unit = fs::read_to_string(dir.join("cgroup"))
                .ok()
                .and_then(|c| unit_of_cgroup(&c));
            out.push(Process {
                pid,
                comm,
                mnt_ns: ns.to_string_lossy().into_owned(),
                unit,
            });
        }
        out.sort_by_key(|p| p.pid);
        (out, unreadable)
    }

    /// Mounts in the mount namespace of `pid`.
    pub fn mounts(&self, pid: u32) -> Option<Vec<Mount>> {
        let text = fs::read_to_string(self.root.join(format!("{pid}/mountinfo"))).ok()?;
        Some(text.lines().filter_map(parse_mountinfo_line).collect())
    }

    /// Mount points (unescaped) in the mount namespace of `pid`.
    pub fn mount_points(&self, pid: u32) -> Option<Vec<String>> {
        Some(self.mounts(pid)?.into_iter().map(|m| m.point).collect())
    }
}

/// One line of /proc/PID/mountinfo, as far as dropfix needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point, unescaped.
    pub point: String,
    /// Receives mount and unmount events from a master (`master:N`): it follows the host.
    pub slave: bool,
    /// Where its mount events go, from the optional fields.
    pub propagation: Propagation,
}

/// A mount's propagation, from mountinfo's optional fields (`shared:N`, `master:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    /// `shared:N` alone: mounts below it reach every peer, the host included when it is one.
    Shared,
    /// `master:N` (with or without `shared:M`): it receives the master's mounts, and its own
    /// never go back.
    Slave,
    /// No optional field: nothing goes in or out.
    Private,
}

impl Propagation {
    /// The word as in mount(8) (`--make-slave`).
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Shared => "shared",
            Propagation::Slave => "slave",
            Propagation::Private => "private",
        }
    }

    /// Mounts made under it stay out of the host's view.
    pub fn hides(self) -> bool {
        self != Propagation::Shared
    }
}

/// Propagation from mountinfo's optional fields.
pub fn propagation_of<'a>(optional: impl IntoIterator<Item = &'a str>) -> Propagation {
    let (mut shared, mut master) = (false, false);
    for f in optional {
        shared |= f.starts_with("shared:");
        master |= f.starts_with("master:");
    }
    match (shared, master) {
        (_, true) => Propagation::Slave,
        (true, false) => Propagation::Shared,
        (false, false) => Propagation::Private,
    }
}

/// The mount in `mounts` (in mountinfo order) that holds `path`: the last one whose point is
/// `path` or one of its ancestors, so a mount stacked over another wins.
pub fn mount_holding<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| m.point == "/" || under(path, &m.point))
        .max_by_key(|m| m.point.len())
        .and_then(|best| mounts.iter().rev().find(|m| m.point == best.point))
}

/// Parse a mountinfo line: `ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SRC SOPTS`.
pub fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let mut f = line.split(' ');
    let point = f.nth(4)?;
    let _opts = f.next()?;
    let optional: Vec<&str> = f.take_while(|x| *x != "-").collect();
    let propagation = propagation_of(optional.iter().copied());
    Some(Mount {
        point: unescape(point),
        slave: propagation == Propagation::Slave,
        propagation,
    })
}

/// The systemd unit a cgroup path names: the innermost component with a unit suffix.
pub fn unit_of_cgroup(cgroup_file: &str) -> Option<String> {
    // cgroup v2 ("0::/...") first, then the named systemd hierarchy of v1/hybrid.
    let path = cgroup_file
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| *p != "/")
        .or_else(|| {
            cgroup_file
                .lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        })?;
    path.split('/')
        .rev()
        .find(|c| {
            [".service", ".scope", ".socket", ".mount", ".swap"]
                .iter()
                .any(|s| c.ends_with(s))
        })
        .map(str::to_string)
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push((v & 0xff) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes grouped by mount namespace, PID order kept.
pub fn by_namespace(procs: &[Process]) -> BTreeMap<String, Vec<&Process>> {
    let mut m: BTreeMap<String, Vec<&Process>> = BTreeMap::new();
    for p in procs {
        m.entry(p.mnt_ns.clone()).or_default().push(p);
    }
    m
}

/// Is `path` (absolute) at or below `dir`?
pub fn under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_cgroup_v2_and_hybrid() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/docker.service\n").as_deref(),
            Some("docker.service")
        );
        assert_eq!(
            unit_of_cgroup("12:cpu:/\n1:name=systemd:/system.slice/foo.service/sub\n0::/\n")
                .as_deref(),
            Some("foo.service")
        );
        assert_eq!(
            unit_of_cgroup("0::/init.scope\n").as_deref(),
            Some("init.scope")
        );
        assert_eq!(unit_of_cgroup("0::/\n"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/var/lib/docker/a\\040b"), "/var/lib/docker/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trail\\04"), "/trail\\04");
        assert_eq!(unescape("\\777"), "\u{fffd}");
    }

    #[test]
    fn mountinfo_line_gives_point_and_slave_flag() {
        let m = parse_mountinfo_line(
            "36 35 98:0 /mnt1 /var/lib/docker/a\\040b rw,noatime master:1 - ext3 /dev/root rw",
        )
        .unwrap();
        assert_eq!(m.point, "/var/lib/docker/a b");
        assert!(m.slave);
        let m = parse_mountinfo_line("36 35 98:0 / /x rw shared:4 - tmpfs t rw").unwrap();
        assert!(!m.slave);
    }

    #[test]
    fn propagation_reads_shared_master_and_none() {
        let p = |l: &str| parse_mountinfo_line(l).unwrap().propagation;
        assert_eq!(
            p("1 0 0:1 / /run rw shared:4 - tmpfs t rw"),
            Propagation::Shared
        );
        // systemd's namespaces: a new peer group that is a slave of the host's.
        assert_eq!(
            p("1 0 0:1 / /run rw shared:9 master:4 - tmpfs t rw"),
            Propagation::Slave
        );
        assert_eq!(
            p("1 0 0:1 / /run rw master:4 - tmpfs t rw"),
            Propagation::Slave
        );
        assert_eq!(p("1 0 0:1 / /run rw - tmpfs t rw"), Propagation::Private);
        assert!(Propagation::Private.hides() && !Propagation::Shared.hides());
    }

    #[test]
    fn mount_holding_picks_the_deepest_and_topmost_mount() {
        let ms: Vec<Mount> = [
            "1 0 0:1 / / rw shared:1 - ext4 r rw",
            "2 1 0:2 / /run rw shared:2 - tmpfs t rw",
            "3 2 0:3 / /run rw - tmpfs t rw",
            "4 3 0:4 / /run/netns rw shared:7 - tmpfs t rw",
        ]
        .iter()
        .filter_map(|l| parse_mountinfo_line(l))
        .collect();
        let m = mount_holding(&ms, "/run").unwrap();
        assert_eq!(m.propagation, Propagation::Private);
        assert_eq!(
            mount_holding(&ms, "/run/netns/x").unwrap().point,
            "/run/netns"
        );
        assert_eq!(mount_holding(&ms, "/var").unwrap().point, "/");
    }

    #[test]
    fn under_is_by_component() {
        assert!(under("/var/lib/docker/x", "/var/lib/docker"));
        assert!(under("/var/lib/docker", "/var/lib/docker"));
        assert!(!under("/var/lib/dockerfoo", "/var/lib/docker"));
    }

    #[test]
    fn own_process_is_listed_with_its_namespace() {
        let (procs, _) = Proc::new().processes();
        let me = procs
            .iter()
            .find(|p| p.pid == std::process::id())
            .expect("self listed");
        assert!(me.mnt_ns.starts_with("mnt:["));
        assert!(Proc::new()
            .mount_points(me.pid)
            .unwrap()
            .contains(&"/".to_string()));
    }
}
