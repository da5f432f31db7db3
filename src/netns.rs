//! Netns: every entry of a network-namespace directory as PID 1 sees it, classified as
//! enterable, a stale leftover, or held by another mount namespace (with who holds it and which
//! container it belongs to).
//!
//! Pure over a /proc tree (`proc_root`, normally `/proc`), except for the nsfs test of each
//! entry, which is a `statfs` and can be swapped out in tests.

use crate::docker::Container;
use crate::inspect::{parse_mountinfo_line, unit_of_cgroup};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// At most this many holders are listed per entry; [`Entry::holder_count`] keeps the total.
pub const MAX_HOLDERS: usize = 16;

/// What an entry is, from PID 1's mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// An nsfs mount in PID 1's mount namespace: `nsenter --net=PATH` works from the host.
    Enterable,
    /// A plain file, and no mount namespace has a mount there: a leftover of a container that
    /// is gone (harmless; dockerd removes or reuses it).
    Stale,
    /// A plain file in PID 1's view, but some other mount namespace has the namespace mounted
    /// there: the network namespace is alive and cannot be entered from the host.
    Held,
}

impl Class {
    /// Every class, in the order metrics list them.
    pub const ALL: [Class; 3] = [Class::Enterable, Class::Stale, Class::Held];

    /// The class as in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Enterable => "enterable",
            Class::Stale => "stale",
            Class::Held => "held",
        }
    }
}

/// A process whose mount namespace has the entry's mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// PID (in `proc_root`'s PID namespace).
    pub pid: u32,
    /// Short command name (`comm`), e.g. `containerd-shim`.
    pub command: String,
    /// Its mount namespace, e.g. `mnt:[4026532251]`.
    pub mount_ns: String,
    /// The systemd unit its cgroup names, e.g. `docker.service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The container an entry is the sandbox of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    /// Full container ID.
    pub id: String,
    /// Container name.
    pub name: String,
}

/// One entry of a netns directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The entry as PID 1 sees it, spelled with the directory as given, e.g.
    /// `/run/docker/netns/0123abcd4567`.
    pub path: String,
    /// What it is.
    pub class: Class,
    /// For [`Class::Held`]: the processes of every mount namespace that has it mounted, by PID,
    /// at most [`MAX_HOLDERS`] of them.
    pub holders: Vec<Holder>,
    /// How many such processes there are in all.
    pub holder_count: usize,
    /// The container whose `SandboxKey` has this entry's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

/// Whether a path is an nsfs mount (`statfs`), or why it cannot be told.
type Probe<'a> = &'a dyn Fn(&Path) -> io::Result<bool>;

/// The real probe: `statfs` magic of the path.
pub fn nsfs_probe(path: &Path) -> io::Result<bool> {
    crate::verify::is_nsfs(path)
}

/// Every entry of `dir` (absolute, as PID 1 sees it), sorted by name. A directory that does not
/// exist or cannot be read gives no entries; so does an entry that cannot be probed (gone since
/// the listing, or unreadable without root).
pub fn classify_dir(proc_root: &Path, dir: &str, containers: &[Container]) -> Vec<Entry> {
    classify_dirs(proc_root, &[dir], containers)
}

/// [`classify_dir`] for several directories; a directory that is the same as an earlier one
/// after following symlinks (in PID 1's root) is skipped, so each entry is listed once.
pub fn classify_dirs(proc_root: &Path, dirs: &[&str], containers: &[Container]) -> Vec<Entry> {
    classify_with(proc_root, dirs, containers, &nsfs_probe)
}

fn classify_with(
    proc_root: &Path,
    dirs: &[&str],
    containers: &[Container],
    probe: Probe<'_>,
) -> Vec<Entry> {
    let root = proc_root.join("1/root");
    let mut seen = BTreeSet::new();
    let mut scan: Option<Scan> = None;
    let mut out = Vec::new();
    for dir in dirs {
        let dir = dir.trim_end_matches('/');
        let real = resolve(&root, dir);
        if !seen.insert(real.clone()) {
            continue;
        }
        let Ok(rd) = fs::read_dir(root.join(real.trim_start_matches('/'))) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let shown = format!("{dir}/{name}");
            let real_path = format!("{real}/{name}");
            let Ok(nsfs) = probe(&root.join(real_path.trim_start_matches('/'))) else {
                continue;
            };
            let (class, holders, holder_count) = if nsfs {
                (Class::Enterable, Vec::new(), 0)
            } else {
                // The /proc walk is only needed once a plain file turns up.
                let scan = scan.get_or_insert_with(|| Scan::new(proc_root));
                let held = scan.holding(&[shown.as_str(), real_path.as_str()]);
                if held.is_empty() {
                    (Class::Stale, Vec::new(), 0)
                } else {
                    let count = held.iter().map(|ns| scan.members[*ns].len()).sum();
                    (Class::Held, scan.holders(&held), count)
                }
            };
            out.push(Entry {
                path: shown,
                class,
                holders,
                holder_count,
                container: container_of(&name, containers),
            });
        }
    }
    out
}

/// A path someone asked about (`doctor --netns`), as PID 1 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A network-namespace file: enterable, stale or held.
    Entry(Entry),
    /// Nothing at that path.
    Missing(String),
    /// Something that is not a network-namespace file: not an nsfs mount, and not the empty
    /// file one is mounted on (a directory, a file with content, a socket...).
    NotNetns(String),
}

/// Each of `paths` (absolute, as PID 1 sees them), in the order given.
pub fn classify_paths(proc_root: &Path, paths: &[&str], containers: &[Container]) -> Vec<Asked> {
    classify_paths_with(proc_root, paths, containers, &nsfs_probe)
}

fn classify_paths_with(
    proc_root: &Path,
    paths: &[&str],
    containers: &[Container],
    probe: Probe<'_>,
) -> Vec<Asked> {
    let root = proc_root.join("1/root");
    let mut scan: Option<Scan> = None;
    let mut out = Vec::new();
    for shown in paths {
        let shown = shown.to_string();
        let real = resolve(&root, &shown);
        let at = root.join(real.trim_start_matches('/'));
        let Ok(meta) = fs::symlink_metadata(&at) else {
            out.push(Asked::Missing(shown));
            continue;
        };
        let name = real.rsplit('/').next().unwrap_or_default().to_string();
        let entry = |class, holders, holder_count| Entry {
            path: shown.clone(),
            class,
            holders,
            holder_count,
            container: container_of(&name, containers),
        };
        if probe(&at).unwrap_or(false) {
            out.push(Asked::Entry(entry(Class::Enterable, Vec::new(), 0)));
            continue;
        }
        // A namespace is only ever mounted on a file; a directory that is a mount point
        // elsewhere (`ip netns` makes /run/netns one) is not a namespace.
        if !meta.is_file() {
            out.push(Asked::NotNetns(shown));
            continue;
        }
        let scan = scan.get_or_insert_with(|| Scan::new(proc_root));
        let held = scan.holding(&[shown.as_str(), real.as_str()]);
        if !held.is_empty() {
            let count = held.iter().map(|ns| scan.members[*ns].len()).sum();
            out.push(Asked::Entry(entry(Class::Held, scan.holders(&held), count)));
        } else if meta.len() == 0 {
            out.push(Asked::Entry(entry(Class::Stale, Vec::new(), 0)));
        } else {
            out.push(Asked::NotNetns(shown));
        }
    }
    out
}

/// `docker restart NAME...` for the held entries that belong to a container (names sorted,
/// each once); `None` when there are none.
pub fn restart_advice(entries: &[Entry]) -> Option<String> {
    let names: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.class == Class::Held)
        .filter_map(|e| e.container.as_ref().map(|c| c.name.as_str()))
        .collect();
    if names.is_empty() {
        return None;
    }
    let names: Vec<&str> = names.into_iter().collect();
    Some(format!("docker restart {}", names.join(" ")))
}

/// The container whose sandbox file is called `name`; a running one first.
fn container_of(name: &str, containers: &[Container]) -> Option<ContainerRef> {
    containers
        .iter()
        .filter(|c| !c.sandbox_key.is_empty() && c.sandbox_key.rsplit('/').next() == Some(name))
        .max_by_key(|c| c.running)
        .map(|c| ContainerRef {
            id: c.id.clone(),
            name: c.name.clone(),
        })
}

/// The processes under `proc_root` by mount namespace, and the mount points of each namespace
/// other than PID 1's (one mountinfo read per namespace).
struct Scan {
    proc_root: PathBuf,
    members: BTreeMap<String, Vec<u32>>,
    points: BTreeMap<String, BTreeSet<String>>,
}

impl Scan {
    fn new(proc_root: &Path) -> Scan {
        let pid1_ns = read_link(&proc_root.join("1/ns/mnt"));
        let mut members: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        if let Ok(rd) = fs::read_dir(proc_root) {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(ns) = read_link(&e.path().join("ns/mnt")) {
                    members.entry(ns).or_default().push(pid);
                }
            }
        }
        let mut points = BTreeMap::new();
        for (ns, pids) in &mut members {
            pids.sort_unstable();
            if Some(ns) == pid1_ns.as_ref() {
                continue;
            }
            // The first member that can still be read speaks for the namespace.
            let text = pids.iter().find_map(|pid| {
                fs::read_to_string(proc_root.join(format!("{pid}/mountinfo"))).ok()
            });
            if let Some(text) = text {
                let set = text
                    .lines()
                    .filter_map(parse_mountinfo_line)
                    .map(|m| m.point)
                    .collect();
                points.insert(ns.clone(), set);
            }
        }
        Scan {
            proc_root: proc_root.to_path_buf(),
            members,
            points,
        }
    }

    /// The namespaces with a mount at any spelling of the entry's path.
    fn holding(&self, paths: &[&str]) -> Vec<&str> {
        let wanted: BTreeSet<String> = paths.iter().flat_map(|p| spellings(p)).collect();
        self.points
            .iter()
            .filter(|(_, pts)| wanted.iter().any(|w| pts.contains(w)))
            .map(|(ns, _)| ns.as_str())
            .collect()
    }

    /// The first [`MAX_HOLDERS`] processes of these namespaces, by PID.
    fn holders(&self, namespaces: &[&str]) -> Vec<Holder> {
        let mut pids: Vec<(u32, &str)> = namespaces
            .iter()
            .flat_map(|ns| self.members[*ns].iter().map(move |p| (*p, *ns)))
            .collect();
        pids.sort_unstable();
        pids.truncate(MAX_HOLDERS);
        pids.into_iter()
            .map(|(pid, ns)| {
                let dir = self.proc_root.join(pid.to_string());
                Holder {
                    pid,
                    command: fs::read_to_string(dir.join("comm"))
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_default(),
                    mount_ns: ns.to_string(),
                    unit: fs::read_to_string(dir.join("cgroup"))
                        .ok()
                        .and_then(|c| unit_of_cgroup(&c)),
                }
            })
            .collect()
    }
}

/// A path and its twin through the `/var/run -> /run` link: docker's SandboxKey says
/// `/var/run/docker/netns/X`, mountinfo says where the mount really is.
fn spellings(p: &str) -> Vec<String> {
    let mut v = vec![p.to_string()];
    if let Some(rest) = p.strip_prefix("/var/run/") {
        v.push(format!("/run/{rest}"));
    } else if let Some(rest) = p.strip_prefix("/run/") {
        v.push(format!("/var/run/{rest}"));
    }
    v
}

fn read_link(p: &Path) -> Option<String> {
    fs::read_link(p)
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
}

/// `path` with every symlink followed inside `root`: absolute targets start again at `root`,
/// not at our own `/` (which the kernel would use when resolving through `/proc/1/root`).
/// Components that do not exist are kept as written.
fn resolve(root: &Path, path: &str) -> String {
    let mut done: Vec<String> = Vec::new();
    let mut todo: VecDeque<String> = components(path).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = root.join(done.join("/")).join(&c);
        match fs::read_link(&here) {
            Ok(target) if hops < 40 => {
                hops += 1;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for t in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(t);
                }
            }
            _ => done.push(c),
        }
    }
    format!("/{}", done.join("/"))
}

fn components(p: &str) -> impl Iterator<Item = String> + '_ {
    p.split('/').filter(|c| !c.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PID1_NS: &str = "mnt:[4026531841]";
    const DOCKERD_NS: &str = "mnt:[4026532251]";
    const OTHER_NS: &str = "mnt:[4026532300]";

    fn nsfs_line(point: &str) -> String {
        format!("452 196 0:4 net:[4026532258] {point} rw - nsfs nsfs rw\n")
    }

    /// A fake /proc: `1/root` is PID 1's file system; each process has ns/mnt, mountinfo,
    /// comm and cgroup.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    impl FakeProc {
        fn new() -> FakeProc {
            let f = FakeProc {
                dir: tempfile::tempdir().unwrap(),
            };
            f.process(1, "systemd", PID1_NS, "0::/init.scope\n", "");
            fs::create_dir_all(f.root().join("run")).unwrap();
            f
        }

        fn proc(&self) -> &Path {
            self.dir.path()
        }

        fn root(&self) -> PathBuf {
            self.dir.path().join("1/root")
        }

        fn process(&self, pid: u32, comm: &str, ns: &str, cgroup: &str, mountinfo: &str) {
            let d = self.dir.path().join(pid.to_string());
            fs::create_dir_all(d.join("ns")).unwrap();
            symlink(ns, d.join("ns/mnt")).unwrap();
            fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(d.join("cgroup"), cgroup).unwrap();
            let base = "22 1 0:21 / / rw shared:1 - ext4 /dev/root rw\n";
            fs::write(d.join("mountinfo"), format!("{base}{mountinfo}")).unwrap();
        }

        /// Plain files in a directory of PID 1's root.
        fn files(&self, dir: &str, names: &[&str]) {
            let d = self.root().join(dir.trim_start_matches('/'));
            fs::create_dir_all(&d).unwrap();
            for n in names {
                fs::write(d.join(n), "").unwrap();
            }
        }

        fn link(&self, at: &str, target: &str) {
            let p = self.root().join(at.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        }
    }

    /// Entries whose name starts with `ns-` are nsfs mounts; everything else a plain file.
    fn by_name(p: &Path) -> io::Result<bool> {
        Ok(p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ns-")))
    }

    fn classify(f: &FakeProc, dirs: &[&str], containers: &[Container]) -> Vec<Entry> {
        classify_with(f.proc(), dirs, containers, &by_name)
    }

    fn container(name: &str, key: &str) -> Container {
        Container {
            id: format!("{name}-id"),
            name: name.into(),
            running: true,
            pid: 4242,
            sandbox_key: key.into(),
        }
    }

    fn shim_host(f: &FakeProc, mounts: &str) {
        // dockerd's old namespace, kept alive by two shims after a live-restore restart.
        for pid in [771, 834] {
            f.process(
                pid,
                "containerd-shim",
                DOCKERD_NS,
                "0::/system.slice/docker.service\n",
                mounts,
            );
        }
    }

    #[test]
    fn asked_paths_are_enterable_stale_held_missing_or_not_a_namespace() {
        let f = FakeProc::new();
        f.files("/run/netns", &["ns-a", "old", "held"]);
        fs::write(f.root().join("run/netns/notes"), "text").unwrap();
        f.process(
            40,
            "sleep",
            OTHER_NS,
            "0::/system.slice/q.service\n",
            &nsfs_line("/run/netns/held"),
        );
        let got = classify_paths_with(
            f.proc(),
            &[
                "/run/netns/ns-a",
                "/run/netns/old",
                "/run/netns/held",
                "/run/netns/nope",
                "/run/netns/notes",
                "/run",
            ],
            &[],
            &by_name,
        );
        let class = |i: usize| match &got[i] {
            Asked::Entry(e) => Some(e.class),
            _ => None,
        };
        assert_eq!(class(0), Some(Class::Enterable));
        assert_eq!(class(1), Some(Class::Stale));
        assert_eq!(class(2), Some(Class::Held));
        assert_eq!(got[3], Asked::Missing("/run/netns/nope".into()));
        assert_eq!(got[4], Asked::NotNetns("/run/netns/notes".into()));
        assert_eq!(got[5], Asked::NotNetns("/run".into()));
        let Asked::Entry(e) = &got[2] else {
            unreachable!()
        };
        assert_eq!(e.holders[0].unit.as_deref(), Some("q.service"));
    }

    #[test]
    fn nsfs_mount_in_pid1_view_is_enterable() {
        let f = FakeProc::new();
        f.files("/run/docker/netns", &["ns-0123abcd4567"]);
        let e = classify(&f, &["/run/docker/netns"], &[]);
        assert_eq!(
            e,
            vec![Entry {
                path: "/run/docker/netns/ns-0123abcd4567".into(),
                class: Class::Enterable,
                holders: vec![],
                holder_count: 0,
                container: None,
            }]
        );
    }

    #[test]
    fn plain_file_nobody_mounts_is_stale() {
        let f = FakeProc::new();
        f.files("/run/docker/netns", &["d957f4f82dc6"]);
        // Another namespace exists, but has other mounts only.
        f.process(
            300,
            "sshd",
            OTHER_NS,
            "0::/system.slice/ssh.service\n",
            &nsfs_line("/run/docker/netns/something-else"),
        );
        let e = classify(&f, &["/run/docker/netns"], &[]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].class, Class::Stale);
        assert!(e[0].holders.is_empty());
        assert_eq!(restart_advice(&e), None);
    }

    #[test]
    fn plain_file_mounted_in_another_namespace_is_held_with_every_process_of_it() {
        let f = FakeProc::new();
        f.files("/run/docker/netns", &["d957f4f82dc6"]);
        shim_host(&f, &nsfs_line("/run/docker/netns/d957f4f82dc6"));
        f.process(
            900,
            "sleep",
            OTHER_NS,
            "0::/system.slice/docker-x.scope\n",
            "",
        );
        let e = classify(&f, &["/run/docker/netns"], &[]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].class, Class::Held);
        assert_eq!(e[0].holder_count, 2);
        assert_eq!(
            e[0].holders,
            vec![
                Holder {
                    pid: 771,
                    command: "containerd-shim".into(),
                    mount_ns: DOCKERD_NS.into(),
                    unit: Some("docker.service".into()),
                },
                Holder {
                    pid: 834,
                    command: "containerd-shim".into(),
                    mount_ns: DOCKERD_NS.into(),
                    unit: Some("docker.service".into()),
                },
            ]
        );
        let j = serde_json::to_value(&e[0]).unwrap();
        assert_eq!(j["class"], "held");
        assert_eq!(j["holders"][0]["unit"], "docker.service");
        assert!(j.get("container").is_none());
    }

    #[test]
    fn holders_are_capped_but_counted() {
        let f = FakeProc::new();
        f.files("/run/docker/netns", &["abc"]);
        for pid in 1000..1000 + MAX_HOLDERS as u32 + 5 {
            f.process(
                pid,
                "worker",
                DOCKERD_NS,
                "0::/system.slice/docker.service\n",
                &nsfs_line("/run/docker/netns/abc"),
            );
        }
        let e = classify(&f, &["/run/docker/netns"], &[]);
        assert_eq!(e[0].holders.len(), MAX_HOLDERS);
        assert_eq!(e[0].holder_count, MAX_HOLDERS + 5);
        assert_eq!(e[0].holders[0].pid, 1000);
    }

    #[test]
    fn held_entry_is_named_by_the_container_whose_sandbox_key_ends_in_it() {
        let f = FakeProc::new();
        f.files(
            "/run/docker/netns",
            &["61611bd50f6d", "d957f4f82dc6", "ns-live"],
        );
        shim_host(
            &f,
            &(nsfs_line("/run/docker/netns/d957f4f82dc6")
                + &nsfs_line("/run/docker/netns/61611bd50f6d")),
        );
        let containers = [
            container("web", "/var/run/docker/netns/d957f4f82dc6"),
            container("db", "/var/run/docker/netns/61611bd50f6d"),
            container("new", "/var/run/docker/netns/ns-live"),
            Container {
                running: false,
                pid: 0,
                ..container("stopped", "")
            },
        ];
        let e = classify(&f, &["/run/docker/netns"], &containers);
        let got: Vec<(&str, Class, Option<&str>)> = e
            .iter()
            .map(|e| {
                (
                    e.path.as_str(),
                    e.class,
                    e.container.as_ref().map(|c| c.name.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("/run/docker/netns/61611bd50f6d", Class::Held, Some("db")),
                ("/run/docker/netns/d957f4f82dc6", Class::Held, Some("web")),
                ("/run/docker/netns/ns-live", Class::Enterable, Some("new")),
            ]
        );
        assert_eq!(e[0].container.as_ref().unwrap().id, "db-id");
        assert_eq!(restart_advice(&e).as_deref(), Some("docker restart db web"));
    }

    #[test]
    fn var_run_and_run_spellings_match_each_other() {
        let f = FakeProc::new();
        f.link("/var/run", "/run"); // absolute: resolved inside PID 1's root
        f.files("/run/docker/netns", &["aaa", "bbb"]);
        // One namespace recorded the mount under /run, the other under a real /var/run.
        f.process(
            771,
            "containerd-shim",
            DOCKERD_NS,
            "0::/system.slice/docker.service\n",
            &nsfs_line("/run/docker/netns/aaa"),
        );
        f.process(
            300,
            "dockerd",
            OTHER_NS,
            "0::/system.slice/docker.service\n",
            &nsfs_line("/var/run/docker/netns/bbb"),
        );
        for dir in ["/var/run/docker/netns", "/run/docker/netns"] {
            let e = classify(&f, &[dir], &[]);
            let got: Vec<(&str, Class, u32)> = e
                .iter()
                .map(|e| (e.path.as_str(), e.class, e.holders[0].pid))
                .collect();
            assert_eq!(
                got,
                vec![
                    (format!("{dir}/aaa").as_str(), Class::Held, 771),
                    (format!("{dir}/bbb").as_str(), Class::Held, 300),
                ],
                "{dir}"
            );
        }
    }

    #[test]
    fn linked_directories_are_listed_once() {
        let f = FakeProc::new();
        f.link("/var/run", "/run");
        f.link("/run/netns", "docker/netns"); // what `ln -s` for `ip netns` leaves
        f.files("/run/docker/netns", &["ns-a", "b"]);
        f.files("/etc/netns", &["c"]);
        let e = classify(
            &f,
            &[
                "/run/docker/netns",
                "/run/netns",
                "/var/run/netns/",
                "/var/run/docker/netns",
                "/nonexistent",
                "/etc/netns",
            ],
            &[],
        );
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/run/docker/netns/b",
                "/run/docker/netns/ns-a",
                "/etc/netns/c"
            ]
        );
        assert_eq!(resolve(&f.root(), "/var/run/netns"), "/run/docker/netns");
        assert_eq!(resolve(&f.root(), "/var/run/../run/x/./y"), "/run/x/y");
    }

    #[test]
    fn entry_that_cannot_be_probed_is_left_out() {
        let f = FakeProc::new();
        f.files("/run/docker/netns", &["gone", "ns-here"]);
        let probe = |p: &Path| {
            if p.ends_with("gone") {
                Err(io::Error::from(io::ErrorKind::NotFound))
            } else {
                by_name(p)
            }
        };
        let e = classify_with(f.proc(), &["/run/docker/netns"], &[], &probe);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "/run/docker/netns/ns-here");
    }

    #[test]
    fn advice_names_held_containers_once_each_sorted() {
        let entry = |name: &str, class| Entry {
            path: format!("/run/docker/netns/{name}"),
            class,
            holders: vec![],
            holder_count: 0,
            container: Some(ContainerRef {
                id: format!("{name}-id"),
                name: name.into(),
            }),
        };
        let e = [
            entry("zeta", Class::Held),
            entry("alpha", Class::Held),
            entry("zeta", Class::Held),
            entry("enterable", Class::Enterable),
            entry("stale", Class::Stale),
            Entry {
                container: None,
                ..entry("orphan", Class::Held)
            },
        ];
        assert_eq!(
            restart_advice(&e).as_deref(),
            Some("docker restart alpha zeta")
        );
        assert_eq!(restart_advice(&e[3..5]), None);
        assert_eq!(restart_advice(&[]), None);
    }

    #[test]
    fn real_probe_tells_a_namespace_file_from_a_plain_one() {
        let t = tempfile::NamedTempFile::new().unwrap();
        assert!(!nsfs_probe(t.path()).unwrap());
        assert!(nsfs_probe(Path::new("/proc/self/ns/net")).unwrap());
        assert!(nsfs_probe(Path::new("/nonexistent/dropfix")).is_err());

        // Through the public entry point: a link to our own netns statfs-es as nsfs.
        let f = FakeProc::new();
        f.files("/run/docker/netns", &["plain"]);
        f.link("/run/docker/netns/live", "/proc/self/ns/net");
        let e = classify_dir(f.proc(), "/run/docker/netns", &[]);
        let got: Vec<(&str, Class)> = e.iter().map(|e| (e.path.as_str(), e.class)).collect();
        assert_eq!(
            got,
            vec![
                ("/run/docker/netns/live", Class::Enterable),
                ("/run/docker/netns/plain", Class::Stale),
            ]
        );
    }
}
