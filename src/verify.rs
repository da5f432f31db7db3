//! Verify: evidence that the fix took on a live host (systemd's value, the process's mount
//! namespace, and whether docker's netns files are enterable from PID 1's view).

use serde::Serialize;
use std::path::Path;

/// `NSFS_MAGIC` from linux/magic.h: what an enterable namespace bind mount reports.
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Where docker and iproute2 keep namespace files (as PID 1 sees them).
pub const NETNS_DIRS: &[&str] = &["/run/docker/netns", "/run/netns", "/var/run/netns"];

/// What a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// systemd's loaded MountFlags.
    MountFlags,
    /// The main process's mount namespace against PID 1's.
    MainNamespace,
    /// A namespace file under docker's netns directory, from PID 1's view.
    Netns,
}

/// One check and its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What the check is about.
    pub kind: CheckKind,
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// A failure that a setting the user was warned about explains (not undone).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub explained: bool,
    /// What was seen.
    pub evidence: String,
}

/// The mount namespace of a process, as `mnt:[4026531840]`.
pub fn mount_ns(proc_root: &Path, pid: u32) -> Option<String> {
    std::fs::read_link(proc_root.join(format!("{pid}/ns/mnt")))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether `pid` shares PID 1's mount namespace; None for no process (0) or unreadable links.
pub fn in_pid1_mount_ns(proc_root: &Path, pid: u32) -> Option<bool> {
    if pid == 0 {
        return None;
    }
    Some(mount_ns(proc_root, 1)? == mount_ns(proc_root, pid)?)
}

/// Is `pid` in PID 1's mount namespace?
pub fn same_mount_ns_as_pid1(proc_root: &Path, unit: &str, pid: u32) -> Check {
    let check = format!("{unit}: main process shares PID 1's mount namespace");
    if pid == 0 {
        return Check {
            kind: CheckKind::MainNamespace,
            explained: false,
            check,
            ok: false,
            evidence: "no main process (MainPID=0)".into(),
        };
    }
    match (mount_ns(proc_root, 1), mount_ns(proc_root, pid)) {
        (Some(a), Some(b)) => Check {
            kind: CheckKind::MainNamespace,
            explained: false,
            check,
            ok: a == b,
            evidence: format!("/proc/1/ns/mnt -> {a}, /proc/{pid}/ns/mnt -> {b}"),
        },
        _ => Check {
            kind: CheckKind::MainNamespace,
            explained: false,
            check,
            ok: false,
            evidence: format!("cannot read /proc/1/ns/mnt or /proc/{pid}/ns/mnt (not root?)"),
        },
    }
}

/// Whether a path, seen from PID 1's mount namespace, is an enterable namespace file.
pub fn is_nsfs(path: &Path) -> std::io::Result<bool> {
    let st = rustix::fs::statfs(path).map_err(std::io::Error::from)?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as u64 == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_check_compares_the_links_of_pid_1_and_the_main_process() {
        let t = tempfile::tempdir().unwrap();
        for (pid, ns) in [
            (1, "mnt:[4026531841]"),
            (42, "mnt:[4026532999]"),
            (43, "mnt:[4026531841]"),
        ] {
            std::fs::create_dir_all(t.path().join(format!("{pid}/ns"))).unwrap();
            std::os::unix::fs::symlink(ns, t.path().join(format!("{pid}/ns/mnt"))).unwrap();
        }
        let own = same_mount_ns_as_pid1(t.path(), "docker.service", 42);
        assert!(!own.ok);
        assert!(
            own.evidence.contains("mnt:[4026532999]"),
            "{}",
            own.evidence
        );
        assert!(same_mount_ns_as_pid1(t.path(), "docker.service", 43).ok);
        assert!(!same_mount_ns_as_pid1(t.path(), "docker.service", 0).ok);
        assert!(
            !same_mount_ns_as_pid1(t.path(), "docker.service", 7).ok,
            "unreadable is not ok"
        );
    }

    #[test]
    fn plain_file_is_not_nsfs_and_ns_file_is() {
        let t = tempfile::NamedTempFile::new().unwrap();
        assert!(!is_nsfs(t.path()).unwrap());
        assert!(is_nsfs(Path::new("/proc/self/ns/net")).unwrap());
    }
}
