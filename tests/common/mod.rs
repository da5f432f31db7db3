//! The offline test harness: fixture roots in temp dirs, one way to run the dropfix binary
//! (plain environment, timeout, never a panic), exact tree snapshots and their differences, and
//! for the hardening tests a seeded random source and an inotify-driven kill switch.
//! The live tests (systemd in containers) use tests/support instead.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Vendor unit directory.
pub const VENDOR: &str = "/usr/lib/systemd/system";
/// Administrator unit directory, where dropfix writes.
pub const ETC: &str = "/etc/systemd/system";
/// The vendor docker.service path.
pub const VENDOR_DOCKER: &str = "/usr/lib/systemd/system/docker.service";
/// dropfix's default drop-in for docker.service.
pub const OWN_DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";
/// dropfix's state directory.
pub const STATE: &str = "/var/lib/dropfix";

/// The header template dropfix ships; every generated file starts with it.
pub const HEADER_TEMPLATE: &str = include_str!("../../templates/header.txt");
/// The one-line reason put before each commented-out MountFlags line.
pub const REASON_TEMPLATE: &str = include_str!("../../templates/reason.txt");

/// A minimal docker.service the way pre-1.12 packages shipped it.
pub const SLAVE_UNIT: &str = "\
[Unit]
Description=Docker Application Container Engine
After=network.target

[Service]
Type=notify
ExecStart=/usr/bin/dockerd -H fd://
MountFlags=slave
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
";

/// Long enough for any run on a slow machine; a hang becomes a failure, not a stuck suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's top directory.
pub fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Fixture roots
// ---------------------------------------------------------------------------------------------

/// A root directory built for one test; removed when dropped.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    /// An empty root.
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::Builder::new()
                .prefix("dropfix-test-")
                .tempdir()
                .expect("creating a temp dir"),
        }
    }

    /// A root whose vendor docker.service is `text`.
    pub fn with_docker(text: impl AsRef<[u8]>) -> Self {
        let f = Self::new();
        f.file(VENDOR_DOCKER, text);
        f
    }

    /// A fresh root holding an exact copy of this one (kinds, bytes, modes, link targets), for
    /// a test that needs the same starting tree many times.
    pub fn copy(&self) -> Fixture {
        let f = Fixture::new();
        copy_tree(self.path(), f.path());
        f
    }

    /// The root's path on the host.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The root's path as the `--root` argument.
    pub fn root_arg(&self) -> &str {
        self.path().to_str().expect("a UTF-8 temp path")
    }

    /// Host path of an in-root path.
    pub fn host(&self, inner: &str) -> PathBuf {
        self.path().join(inner.trim_start_matches('/'))
    }

    /// Write a file (parents created 0755) with mode 0644.
    pub fn file(&self, inner: &str, data: impl AsRef<[u8]>) -> &Self {
        self.file_mode(inner, data, 0o644)
    }

    /// Write a file with an explicit mode.
    pub fn file_mode(&self, inner: &str, data: impl AsRef<[u8]>, mode: u32) -> &Self {
        let p = self.host(inner);
        fs::create_dir_all(p.parent().expect("a parent")).expect("creating parents");
        fs::write(&p, data).expect("writing a fixture file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Create a directory (and parents).
    pub fn dir(&self, inner: &str) -> &Self {
        fs::create_dir_all(self.host(inner)).expect("creating a fixture dir");
        self
    }

    /// Create a symlink at `inner` with the raw `target` (parents created).
    pub fn symlink(&self, inner: &str, target: &str) -> &Self {
        let p = self.host(inner);
        fs::create_dir_all(p.parent().expect("a parent")).expect("creating parents");
        symlink(target, &p).expect("creating a fixture symlink");
        self
    }

    /// Read an in-root file.
    pub fn read(&self, inner: &str) -> Vec<u8> {
        fs::read(self.host(inner)).unwrap_or_else(|e| panic!("reading {inner}: {e}"))
    }

    /// Does anything (even a dangling symlink) exist at `inner`?
    pub fn exists(&self, inner: &str) -> bool {
        fs::symlink_metadata(self.host(inner)).is_ok()
    }

    /// Run `dropfix ARGS --root <this root>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--root", self.root_arg()]);
        run(&all)
    }

    /// A `dropfix --root <this root> ARGS` command to spawn by hand.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut all = vec!["--root", self.root_arg()];
        all.extend_from_slice(args);
        dropfix(&all)
    }

    /// Every entry of the tree, with bytes, modes and mtimes.
    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.path())
    }

    /// Set every mtime in the tree to one fixed past instant, so a rewrite with identical
    /// bytes still shows up as a changed mtime whatever the clock granularity.
    pub fn age(&self) {
        age(self.path());
    }
}

/// Copies the tree at `from` to `to` exactly (kinds, bytes, modes, link targets, not
/// following links); returns the number of regular files copied.
pub fn copy_tree(from: &Path, to: &Path) -> usize {
    let mut paths = Vec::new();
    all_paths(from, &mut paths);
    let mut files = 0;
    for p in &paths {
        let dest = to.join(p.strip_prefix(from).expect("under the tree"));
        let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let ft = m.file_type();
        if ft.is_symlink() {
            symlink(fs::read_link(p).expect("reading a link"), &dest).expect("symlink");
            continue;
        }
        if ft.is_dir() {
            fs::create_dir_all(&dest).expect("creating a dir");
        } else if ft.is_file() {
            fs::copy(p, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", p.display()));
            files += 1;
        } else {
            panic!("{}: cannot copy a special file", p.display());
        }
        fs::set_permissions(&dest, fs::Permissions::from_mode(m.mode() & 0o7777)).expect("chmod");
    }
    files
}

/// The vendor unit of the example CoreOS 1192 root (MountFlags=slave).
pub fn vendor_docker() -> String {
    fs::read_to_string(top().join("examples/coreos-1192").join(&VENDOR_DOCKER[1..]))
        .expect("the example docker.service")
}

/// A small host-like root: docker.service with MountFlags=slave under /usr, /etc and /var/lib.
pub fn host_like() -> Fixture {
    let f = Fixture::with_docker(vendor_docker());
    f.file(
        "/usr/lib/systemd/system/containerd.service",
        "[Service]\nExecStart=/usr/bin/containerd\n",
    )
    .symlink(
        "/etc/systemd/system/multi-user.target.wants/docker.service",
        VENDOR_DOCKER,
    )
    .file("/var/lib/misc/keep", "not dropfix's\n");
    f
}

/// Files of examples/coreos-1192, the example image root; at least the four it ships.
pub fn coreos_example() -> Fixture {
    let example = top().join("examples/coreos-1192");
    let f = Fixture::new();
    let mut files = 0;
    for (p, n) in snapshot(&example).0 {
        if let Kind::File(data) = n.kind {
            f.file_mode(&p, data, n.mode);
            files += 1;
        }
    }
    assert!(
        files >= 4,
        "only {files} files in {} (os-release, systemd, docker.service, early-docker.service)",
        example.display()
    );
    f
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// The binary under test: `$DROPFIX_BIN` when set (tests/run sets it to the static release
/// build), else the one cargo built for this test run; the same rule as tests/support.
pub fn dropfix_bin() -> PathBuf {
    match std::env::var_os("DROPFIX_BIN") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "DROPFIX_BIN={} is not a file", p.display());
            p
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_dropfix")),
    }
}

/// `program` with a plain environment: only PATH, LC_ALL=C and a system bus address that
/// leads nowhere (no colour, no terminal, no host systemd); stdin empty.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/dropfix-test-bus",
        )
        .stdin(Stdio::null());
    c
}

/// A `dropfix ARGS` command with the plain environment.
pub fn dropfix(args: &[&str]) -> Command {
    let mut c = command(dropfix_bin());
    c.args(args);
    c
}

/// The outcome of one run that exited with a status and without a panic.
#[derive(Debug)]
pub struct Run {
    /// Exit status.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The command line, for failure messages.
    pub cmdline: String,
}

impl Run {
    /// Panic with the whole run shown unless the exit status is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit status\n{self}");
        self
    }

    /// Parse stdout as the JSON object `--format json` prints.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value: {e}\n{self}"))
    }

    /// The failure contract: exit 1, exactly one terminated line on stderr saying
    /// `dropfix: error: `, nothing on stdout. Returns that line.
    pub fn expect_one_line_error(&self) -> String {
        assert_eq!(self.code, 1, "expected exit status 1\n{self}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr\n{self}"
        );
        assert!(
            self.stderr.ends_with('\n'),
            "stderr line not terminated\n{self}"
        );
        assert!(
            lines[0].starts_with("dropfix: error: "),
            "the error line does not start with \"dropfix: error: \"\n{self}"
        );
        assert_eq!(
            self.stdout, "",
            "output on stdout despite the error\n{self}"
        );
        lines[0].to_string()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// Fails on a Rust panic or a death by signal: dropfix must always exit with a status.
pub fn assert_no_panic(cmdline: &str, status: std::process::ExitStatus, stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "$ {cmdline}\npanicked:\n{stderr}"
    );
    assert!(
        status.code().is_some(),
        "$ {cmdline}\ndied of a signal ({status:?}):\n{stderr}"
    );
}

/// Run the binary with `args`, with the plain environment and a timeout.
pub fn run(args: &[&str]) -> Run {
    run_command(dropfix(args), &format!("dropfix {}", args.join(" ")))
}

/// Run any command (built with [`command`] or [`dropfix`], e.g. dropfix under `unshare`) to
/// the end within the timeout; asserts it neither panicked nor died of a signal.
pub fn run_command(mut cmd: Command, cmdline: &str) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmdline}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("waiting for dropfix") {
            Some(s) => break s,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmdline}: still running after {RUN_TIMEOUT:?}; killed");
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let stdout = out_t.join().expect("reading stdout");
    let stderr = String::from_utf8_lossy(&err_t.join().expect("reading stderr")).into_owned();
    assert_no_panic(cmdline, status, &stderr);
    Run {
        code: status.code().expect("an exit status"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
        cmdline: cmdline.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tree snapshots
// ---------------------------------------------------------------------------------------------

/// What one path in a tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symlink and its raw target.
    Symlink(PathBuf),
    /// Anything else (fifo, socket, device).
    Other,
}

/// One path in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Type and content.
    pub kind: Kind,
    /// Permission bits (0 for symlinks).
    pub mode: u32,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
}

impl Node {
    /// Same kind, content and mode (and mtime if asked).
    pub fn same(&self, other: &Node, mtimes: bool) -> bool {
        self.kind == other.kind && self.mode == other.mode && (!mtimes || self.mtime == other.mtime)
    }
}

/// Every path under a root (the root itself as "/", others as "/etc/..."), not following
/// symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, Node>);

/// Take a snapshot of `root`.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut map = BTreeMap::new();
    walk(root, root, &mut map);
    Snapshot(map)
}

fn walk(root: &Path, p: &Path, map: &mut BTreeMap<String, Node>) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink(fs::read_link(p).expect("reading a link"))
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File(fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
    } else {
        Kind::Other
    };
    let rel = p.strip_prefix(root).expect("under the root");
    let key = format!("/{}", rel.display());
    map.insert(
        key,
        Node {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            },
            mtime: (m.mtime(), m.mtime_nsec()),
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)
            .expect("listing a dir")
            .map(|e| e.expect("a dir entry").path())
            .collect();
        names.sort();
        for n in names {
            walk(root, &n, map);
        }
    }
}

fn age(root: &Path) {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    // 2001-09-09: far from "now", so any write changes the mtime.
    let t = Timespec {
        tv_sec: 1_000_000_000,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    // Children first: setting a child's time does not touch its directory's mtime, but be safe.
    let mut paths = Vec::new();
    all_paths(root, &mut paths);
    for host in paths.iter().rev() {
        utimensat(CWD, host, &times, AtFlags::SYMLINK_NOFOLLOW)
            .unwrap_or_else(|e| panic!("setting times on {}: {e}", host.display()));
    }
}

/// Every path under `p` (itself first), not following symlinks; names need not be UTF-8.
fn all_paths(p: &Path, out: &mut Vec<PathBuf>) {
    out.push(p.to_path_buf());
    let is_dir = fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if is_dir {
        for e in fs::read_dir(p).expect("listing a dir") {
            all_paths(&e.expect("a dir entry").path(), out);
        }
    }
}

impl Snapshot {
    /// Directories in the tree.
    pub fn dirs(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, n)| n.kind == Kind::Dir)
            .map(|(p, _)| p.as_str())
            .collect()
    }

    /// Differences from `other`, one line each; mtimes compared only when `mtimes`.
    pub fn differences(&self, other: &Snapshot, mtimes: bool) -> String {
        let mut out = String::new();
        for (p, a) in &self.0 {
            match other.0.get(p) {
                None => {
                    let _ = writeln!(out, "gone: {p}: {}", show(a));
                }
                Some(b) => {
                    if a.kind != b.kind {
                        let _ = writeln!(out, "content differs: {p}: {} vs {}", show(a), show(b));
                    }
                    if a.mode != b.mode {
                        let _ = writeln!(out, "mode differs: {p}: {:o} vs {:o}", a.mode, b.mode);
                    }
                    if mtimes && a.mtime != b.mtime {
                        let _ = writeln!(out, "mtime differs: {p}: {:?} vs {:?}", a.mtime, b.mtime);
                    }
                }
            }
        }
        for (p, b) in &other.0 {
            if !self.0.contains_key(p) {
                let _ = writeln!(out, "new: {p}: {}", show(b));
            }
        }
        out
    }

    /// Same paths, kinds, bytes and modes (and mtimes if asked)?
    pub fn same(&self, other: &Snapshot, mtimes: bool) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|(p, a)| other.0.get(p).is_some_and(|b| a.same(b, mtimes)))
    }

    /// Panic unless `after` has the same paths, kinds, bytes and modes (and mtimes if asked).
    pub fn assert_same(&self, after: &Snapshot, mtimes: bool, context: &str) {
        let d = self.differences(after, mtimes);
        assert!(d.is_empty(), "{context}: the tree changed:\n{d}");
    }
}

/// A node for a failure message; long files cut short.
fn show(n: &Node) -> String {
    const MAX: usize = 4096;
    match &n.kind {
        Kind::Dir => "directory".into(),
        Kind::File(d) if d.len() > MAX => format!(
            "file of {} bytes starting {:?}",
            d.len(),
            String::from_utf8_lossy(&d[..MAX])
        ),
        Kind::File(d) => format!("file {:?}", String::from_utf8_lossy(d)),
        Kind::Symlink(t) => format!("symlink -> {}", t.display()),
        Kind::Other => "special file".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// What dropfix writes, modelled independently
// ---------------------------------------------------------------------------------------------

/// The header dropfix puts on generated files: as many lines as its template, all comments,
/// first saying who generated it, then why and how to undo. Returns (header, body).
pub fn split_generated(data: &[u8]) -> (String, Vec<u8>) {
    let n = HEADER_TEMPLATE.lines().count();
    let mut at = 0;
    for _ in 0..n {
        let nl = data[at..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("generated file shorter than its header:\n{}", lossy(data)));
        at += nl + 1;
    }
    let header = String::from_utf8(data[..at].to_vec()).expect("header is UTF-8");
    assert!(
        header.starts_with("# Generated by dropfix"),
        "header does not say who generated it:\n{header}"
    );
    assert!(
        header.lines().all(|l| l.starts_with('#')),
        "header has a non-comment line:\n{header}"
    );
    assert!(
        header.contains("/var/run/docker/netns"),
        "header does not say why:\n{header}"
    );
    assert!(
        header.contains("dropfix revert"),
        "header does not say how to undo:\n{header}"
    );
    (header, data[at..].to_vec())
}
/// `vendor` with every `MountFlags=` line (matched whole, without its terminator) commented
/// out and preceded by the shipped one-line reason, every other byte kept: what a full copy or
/// a neutralised drop-in must hold after its header.
pub fn commented_out(vendor: &[u8], unit: &str) -> Vec<u8> {
    let reason = REASON_TEMPLATE.trim_end().replace("{unit}", unit);
    let mut out = Vec::new();
    for line in vendor.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.starts_with(b"MountFlags=") {
            let eol: &[u8] = if vendor.windows(2).any(|w| w == b"\r\n") {
                b"\r\n"
            } else {
                b"\n"
            };
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(eol);
            out.push(b'#');
        }
        out.extend_from_slice(line);
    }
    out
}

/// Bytes as text for a failure message.
pub fn lossy(d: &[u8]) -> String {
    String::from_utf8_lossy(d).into_owned()
}

/// An independent, deliberately small model of how systemd reads MountFlags for `unit` in
/// the fixtures these tests build (fragment along the search path, `<unit>.d` drop-ins: first
/// basename wins, survivors in byte order; no continuations). Returns "" for unset.
pub fn effective_mount_flags(root: &Path, unit: &str, version: u32) -> String {
    const SEARCH: &[&str] = &[
        "/etc/systemd/system.control",
        "/run/systemd/system.control",
        "/run/systemd/transient",
        "/etc/systemd/system",
        "/run/systemd/system",
        "/usr/local/lib/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
    ];
    let host = |inner: &str| root.join(inner.trim_start_matches('/'));
    let fragment = SEARCH
        .iter()
        .map(|d| host(&format!("{d}/{unit}")))
        .find(|p| fs::symlink_metadata(p).is_ok())
        .unwrap_or_else(|| panic!("{unit}: no fragment in the model's search path"));
    let mut dropins: BTreeMap<Vec<u8>, PathBuf> = BTreeMap::new();
    for d in SEARCH {
        let dir = host(&format!("{d}/{unit}.d"));
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd {
            let e = e.expect("a dir entry");
            let name = e.file_name();
            let n = name.to_string_lossy();
            if !n.ends_with(".conf") || n.starts_with('.') {
                continue;
            }
            dropins
                .entry(name.as_encoded_bytes().to_vec())
                .or_insert(e.path());
        }
    }
    let empty_resets = !(229..=232).contains(&version);
    let mut flags = String::new();
    for path in std::iter::once(fragment).chain(dropins.into_values()) {
        let data = fs::read(resolve_in_root(root, &path)).unwrap_or_default();
        let mut section = String::new();
        for line in String::from_utf8_lossy(&data).lines() {
            let l = line.trim();
            if l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            if section != "Service" {
                continue;
            }
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() != "MountFlags" {
                    continue;
                }
                match v.trim() {
                    "" if empty_resets => flags.clear(),
                    v @ ("shared" | "slave" | "private") => flags = v.to_string(),
                    _ => {}
                }
            }
        }
    }
    flags
}

/// Follow symlinks of a fixture path with absolute targets taken inside the root; a link to
/// /dev/null reads as empty.
fn resolve_in_root(root: &Path, p: &Path) -> PathBuf {
    let mut p = p.to_path_buf();
    for _ in 0..16 {
        match fs::read_link(&p) {
            Ok(t) if t == Path::new("/dev/null") => return PathBuf::from("/dev/null"),
            Ok(t) if t.is_absolute() => p = root.join(t.strip_prefix("/").expect("absolute")),
            Ok(t) => p = p.parent().expect("a parent").join(t),
            Err(_) => return p,
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Randomness, timing and kills, for the hardening tests
// ---------------------------------------------------------------------------------------------

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

/// Median of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Watches every directory under a root with inotify and counts what happens in them.
pub struct Watcher {
    fd: rustix::fd::OwnedFd,
    root: PathBuf,
    dirs: BTreeMap<i32, PathBuf>,
    /// Every name created or renamed into place, as an in-root path ("/etc/..."), in order.
    pub created: Vec<String>,
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
            root: root.to_path_buf(),
            dirs: BTreeMap::new(),
            created: Vec::new(),
            events: 0,
        };
        for p in snapshot(root).dirs() {
            w.watch(&root.join(p.trim_start_matches('/')));
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
                        let rel = p.strip_prefix(&self.root).expect("under the root");
                        self.created.push(format!("/{}", rel.display()));
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
/// root (plus `after` of spinning), or `after` past the start when `events` is None, whichever
/// comes first. Returns whether the kill landed before the process exited by itself.
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
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dropfix ran for over {RUN_TIMEOUT:?}");
        }
        std::hint::spin_loop();
    }
}
