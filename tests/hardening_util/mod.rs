//! Shared by the hardening tests: fixture roots in temp dirs, exact tree snapshots, running the
//! built binary, a seeded random source and a kill switch driven by file-system events.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The dropfix binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dropfix")
}

/// A `dropfix` command with no bus, no colour and no terminal.
pub fn dropfix(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/dropfix-test-bus",
        )
        .stdin(Stdio::null());
    c
}

/// Runs `dropfix --root ROOT ARGS...` to the end.
pub fn run(root: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--root", root.to_str().expect("a UTF-8 temp path")];
    all.extend_from_slice(args);
    let out = dropfix(&all).output().expect("running dropfix");
    assert_no_panic(&out);
    out
}

/// Fails on a Rust panic or a signal death (dropfix must exit with a status).
pub fn assert_no_panic(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "dropfix panicked: {err}"
    );
    assert!(
        out.status.code().is_some(),
        "dropfix died of a signal: {:?}\n{err}",
        out.status
    );
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One entry of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file: permission bits and bytes.
    File(u32, Vec<u8>),
    /// A symlink and its target.
    Link(String),
    /// A directory and its permission bits.
    Dir(u32),
}

/// Every entry under a directory, by path relative to it ("etc/systemd/system/x"), exact.
pub type Tree = BTreeMap<String, Node>;

/// Snapshot `dir` without following any symlink.
pub fn snapshot(dir: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let rel = p
                .strip_prefix(dir)
                .expect("under dir")
                .to_string_lossy()
                .into_owned();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).map(|t| t.to_string_lossy().into_owned());
                out.insert(rel, Node::Link(t.unwrap_or_default()));
            } else if m.is_dir() {
                out.insert(rel, Node::Dir(mode));
                stack.push(p);
            } else {
                out.insert(rel, Node::File(mode, fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Describes how two snapshots differ, for assertion messages; empty when equal.
pub fn tree_diff(want: &Tree, got: &Tree) -> String {
    let mut out = String::new();
    for (k, v) in want {
        match got.get(k) {
            None => out.push_str(&format!("  missing: {k}\n")),
            Some(g) if g != v => out.push_str(&format!("  differs: {k}: {}\n", brief(g))),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            out.push_str(&format!("  extra:   {k}: {}\n", brief(v)));
        }
    }
    out
}

fn brief(n: &Node) -> String {
    match n {
        Node::File(m, d) => format!(
            "file {m:o}, {} bytes: {:?}",
            d.len(),
            String::from_utf8_lossy(&d[..d.len().min(60)])
        ),
        Node::Link(t) => format!("symlink to {t}"),
        Node::Dir(m) => format!("dir {m:o}"),
    }
}

/// A file tree to lay down in a fresh root.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    /// (in-root path, mode, bytes)
    pub files: Vec<(String, u32, Vec<u8>)>,
    /// (in-root path, target)
    pub links: Vec<(String, String)>,
    /// Empty directories.
    pub dirs: Vec<String>,
}

impl Fixture {
    /// An empty fixture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (mode 0644).
    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files
            .push((path.to_string(), 0o644, text.as_bytes().to_vec()));
        self
    }

    /// Adds a file with raw bytes and a mode.
    pub fn raw(mut self, path: &str, mode: u32, bytes: &[u8]) -> Self {
        self.files.push((path.to_string(), mode, bytes.to_vec()));
        self
    }

    /// Adds a symlink.
    pub fn link(mut self, path: &str, target: &str) -> Self {
        self.links.push((path.to_string(), target.to_string()));
        self
    }

    /// Adds an empty directory.
    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.to_string());
        self
    }

    /// Lays the fixture down under `root` (which must exist).
    pub fn build(&self, root: &Path) {
        for d in &self.dirs {
            fs::create_dir_all(at(root, d)).expect("mkdir");
        }
        for (p, mode, bytes) in &self.files {
            let host = at(root, p);
            fs::create_dir_all(host.parent().expect("a parent")).expect("mkdir");
            fs::write(&host, bytes).expect("write");
            fs::set_permissions(&host, fs::Permissions::from_mode(*mode)).expect("chmod");
        }
        for (p, t) in &self.links {
            let host = at(root, p);
            fs::create_dir_all(host.parent().expect("a parent")).expect("mkdir");
            symlink(t, &host).expect("symlink");
        }
    }
}

/// Host path of an in-root path.
pub fn at(root: &Path, inner: &str) -> PathBuf {
    root.join(inner.trim_start_matches('/'))
}

/// The vendor unit of the example CoreOS 1192 root (MountFlags=slave).
pub fn vendor_docker() -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/coreos-1192/usr/lib/systemd/system/docker.service"),
    )
    .expect("the example docker.service")
}

/// A small host-like root: docker.service with MountFlags=slave under /usr, /etc and /var/lib.
pub fn host_like() -> Fixture {
    Fixture::new()
        .file("/usr/lib/systemd/system/docker.service", &vendor_docker())
        .file(
            "/usr/lib/systemd/system/containerd.service",
            "[Service]\nExecStart=/usr/bin/containerd\n",
        )
        .link(
            "/etc/systemd/system/multi-user.target.wants/docker.service",
            "/usr/lib/systemd/system/docker.service",
        )
        .file("/var/lib/misc/keep", "not dropfix's\n")
}

/// xorshift64*: reproducible randomness from a printed seed.
pub struct Rng(u64);

impl Rng {
    /// From `$name` if set, else `default` (a fixed seed keeps a test's inputs the same from
    /// run to run); prints the seed.
    pub fn from_env_or(name: &str, default: u64) -> Rng {
        let seed = std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("random seed: {name}={seed}");
        Rng(seed.max(1))
    }

    /// From `$name` if set, else from the clock; prints the seed so a failure can be replayed.
    pub fn from_env(name: &str) -> Rng {
        let seed = std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("random seed: {name}={seed}");
        Rng(seed.max(1))
    }

    /// Next raw value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Busy-waits until `t` (sleeping would round up to the scheduler's tick).
pub fn spin_until(t: Instant) {
    while Instant::now() < t {
        std::hint::spin_loop();
    }
}

/// Median of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Watches every directory under a root with inotify and counts what happens in them.
pub struct Watcher {
    fd: rustix::fd::OwnedFd,
    dirs: BTreeMap<i32, PathBuf>,
    /// Every name created or renamed into place, with its directory, in order.
    pub created: Vec<PathBuf>,
    /// Events seen so far.
    pub events: usize,
}

impl Watcher {
    /// Watches `root` and every directory below it.
    pub fn new(root: &Path) -> Watcher {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .expect("inotify_init");
        let mut w = Watcher {
            fd,
            dirs: BTreeMap::new(),
            created: Vec::new(),
            events: 0,
        };
        w.watch(root);
        for (rel, n) in snapshot(root) {
            if matches!(n, Node::Dir(_)) {
                w.watch(&root.join(rel));
            }
        }
        w
    }

    fn watch(&mut self, dir: &Path) {
        use rustix::fs::inotify::{add_watch, WatchFlags};
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::MOVED_TO
            | WatchFlags::MOVED_FROM
            | WatchFlags::DONT_FOLLOW
            | WatchFlags::ONLYDIR;
        if let Ok(wd) = add_watch(&self.fd, dir, flags) {
            self.dirs.insert(wd, dir.to_path_buf());
        }
    }

    /// Reads what is queued without blocking; returns the number of new events.
    pub fn poll(&mut self) -> usize {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
        let mut n = 0;
        let mut new_dirs = Vec::new();
        {
            let mut r = Reader::new(&self.fd, &mut buf);
            while let Ok(ev) = r.next() {
                n += 1;
                let flags = ev.events();
                if let (Some(name), Some(dir)) = (ev.file_name(), self.dirs.get(&ev.wd())) {
                    let p = dir.join(name.to_string_lossy().as_ref());
                    if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                        if flags.contains(ReadFlags::ISDIR) {
                            new_dirs.push(p.clone());
                        }
                        self.created.push(p);
                    }
                }
            }
        }
        for d in new_dirs {
            self.watch(&d);
        }
        self.events += n;
        n
    }
}

/// Spawns `cmd` and SIGKILLs it once `events` file-system events were seen under the watched
/// root (plus `extra` of spinning), or at `deadline` after the start, whichever comes first.
/// Returns whether the kill landed before the process exited by itself.
pub fn run_and_kill(
    mut cmd: Command,
    watcher: &mut Watcher,
    events: Option<usize>,
    after: Duration,
) -> bool {
    let mut child: Child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning dropfix");
    let start = Instant::now();
    let mut fire_at: Option<Instant> = match events {
        None => Some(start + after),
        Some(_) => None,
    };
    loop {
        watcher.poll();
        if fire_at.is_none() && events.is_some_and(|k| watcher.events >= k) {
            fire_at = Some(Instant::now() + after);
        }
        if let Some(t) = fire_at {
            if Instant::now() >= t {
                let killed = child.kill().is_ok();
                let st = child.wait().expect("wait");
                watcher.poll();
                // Killed only if it had not already exited with a status.
                return killed && st.code().is_none();
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            watcher.poll();
            return false;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dropfix ran for over a minute");
        }
        std::hint::spin_loop();
    }
}
