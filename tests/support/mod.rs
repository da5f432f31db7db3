//! Throwaway containers with a real systemd as PID 1 for live tests (wraps tests/harness/harness.sh).
//!
//! Each [`Container`] boots the host's own /usr under systemd-nspawn in about a second, with a
//! stand-in docker.service (`MountFlags=slave`) whose daemon leaves a network namespace bind
//! mount at [`NETNS_PATH`], the way dockerd does. The container's system bus is reachable from
//! the host at [`Container::bus_address`]; its files at [`Container::root`]. Dropping the
//! container stops it and fails the test if anything was left behind. Needs root.
//!
//! [`Setup::real_docker`] boots a cached Debian rootfs with the real docker.io instead
//! (tests/harness/rootfs.sh), [`systemd_rootfs`] one per systemd version for the oracle
//! (tests/harness/systemd-rootfs.sh), and [`dropfix_bin`] picks the binary to install
//! (`DROPFIX_BIN`).
#![allow(dead_code)] // each test binary uses a different part of this module

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The stand-in vendor unit: `Type=forking`, `MountFlags=slave`, runs [`FAKE_DOCKERD_PATH`].
pub const DOCKER_SERVICE: &str = include_str!("../harness/docker.service");
/// The stand-in daemon script (see its header for the failure switch).
pub const FAKE_DOCKERD: &str = include_str!("../harness/fake-dockerd");
/// Where the stand-in daemon is installed in the container.
pub const FAKE_DOCKERD_PATH: &str = "/usr/local/sbin/fake-dockerd";
/// The network namespace the stand-in daemon bind-mounts, as seen inside the container.
pub const NETNS_PATH: &str = "/run/docker/netns/fake0";
/// If this file exists in the container, the stand-in daemon fails to start when it runs in
/// PID 1's mount namespace, i.e. exactly when the MountFlags fix is in effect.
pub const FAIL_IN_HOST_NS_MARKER: &str = "/etc/fake-dockerd-fail-in-host-ns";

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// dockerd's configuration file.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Where the local image's tar sits in the real-docker rootfs (busybox alone; see rootfs.sh).
pub const BUSYBOX_IMAGE_TAR: &str = "/usr/share/dropfix-test/busybox.tar";

/// What a [`Container`] boots with: vendor units and files under /usr, files in the initial /etc.
#[derive(Debug, Clone)]
pub struct Setup {
    docker_service: Option<String>,
    units: Vec<(String, String, bool)>,
    usr_files: Vec<(String, Vec<u8>, u32)>,
    binaries: Vec<(PathBuf, String)>,
    etc_files: Vec<(String, Vec<u8>)>,
    /// Symlinks under /usr or /etc: (path, link text).
    links: Vec<(String, String)>,
    rootfs: Option<PathBuf>,
    docker: bool,
    persist: Option<PathBuf>,
    etc_trees: Vec<PathBuf>,
    binds: Vec<(PathBuf, String)>,
    usr_rw: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            docker_service: Some(DOCKER_SERVICE.to_string()),
            units: Vec::new(),
            usr_files: vec![(
                FAKE_DOCKERD_PATH.to_string(),
                FAKE_DOCKERD.as_bytes().to_vec(),
                0o755,
            )],
            binaries: Vec::new(),
            etc_files: Vec::new(),
            links: Vec::new(),
            rootfs: None,
            docker: false,
            persist: None,
            etc_trees: Vec::new(),
            binds: Vec::new(),
            usr_rw: false,
        }
    }
}

impl Setup {
    /// The stand-in docker.service with `MountFlags=slave`, enabled, and its daemon.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the text of the vendor `/usr/lib/systemd/system/docker.service` (still enabled).
    pub fn docker_service(mut self, text: &str) -> Self {
        self.docker_service = Some(text.to_string());
        self
    }

    /// No docker.service at all.
    pub fn no_docker(mut self) -> Self {
        self.docker_service = None;
        self
    }

    /// A vendor unit in `/usr/lib/systemd/system`, not started at boot.
    pub fn unit(mut self, name: &str, text: &str) -> Self {
        self.units.push((name.to_string(), text.to_string(), false));
        self
    }

    /// A vendor unit in `/usr/lib/systemd/system`, wanted by multi-user.target (started at boot).
    pub fn enabled_unit(mut self, name: &str, text: &str) -> Self {
        self.units.push((name.to_string(), text.to_string(), true));
        self
    }

    /// A file under /usr, e.g. `/usr/lib/systemd/system/docker.service.d/99-slave.conf`.
    pub fn usr_file(mut self, path: &str, text: &str) -> Self {
        self.usr_files
            .push((path.to_string(), text.as_bytes().to_vec(), 0o644));
        self
    }

    /// Copies a host file (e.g. the built dropfix) to `dest` under /usr, mode 0755.
    pub fn install_binary(mut self, host_path: impl AsRef<Path>, dest: &str) -> Self {
        self.binaries
            .push((host_path.as_ref().to_path_buf(), dest.to_string()));
        self
    }

    /// A file present in /etc from boot on, e.g. an administrator's drop-in.
    pub fn etc_file(mut self, path: &str, text: &str) -> Self {
        self.etc_files
            .push((path.to_string(), text.as_bytes().to_vec()));
        self
    }

    /// Debian's real docker.io instead of the stand-in: boots the cached rootfs
    /// ([`docker_rootfs`]) in a container dockerd can run in (harness `DOCKER=1`), with Debian's
    /// docker.service overridden from /usr by a copy that has `MountFlags=slave`, the way old
    /// vendor units had it. Enabled, so dockerd starts at boot. No stand-in daemon.
    pub fn real_docker() -> Self {
        let rootfs = docker_rootfs();
        let unit = rootfs.join("usr/lib/systemd/system/docker.service");
        let debian = fs::read_to_string(&unit)
            .unwrap_or_else(|e| panic!("reading Debian's unit {}: {e}", unit.display()));
        Setup {
            docker_service: Some(with_mount_flags_slave(&debian)),
            usr_files: Vec::new(),
            rootfs: Some(rootfs),
            docker: true,
            ..Setup::default()
        }
    }

    /// `/etc/docker/daemon.json` with `{"live-restore": true}`: containers keep running while
    /// dockerd stops and starts again.
    pub fn live_restore(self) -> Self {
        self.etc_file(DAEMON_JSON, "{\"live-restore\": true}\n")
    }

    /// dockerd starts its own containerd, as its child and so in its mount namespace: the
    /// layout of the docker packages that shipped `MountFlags=slave`. Debian's unit points
    /// dockerd at the system containerd instead (`--containerd=...`), which runs in PID 1's
    /// mount namespace and cannot see the container root file systems a slave-namespace dockerd
    /// mounts, so `docker run` fails there ("exec: ...: executable file not found"). dockerd
    /// 20.10 also picks the system containerd whenever its socket answers, so
    /// containerd.service is masked (an empty unit file in /etc).
    pub fn dockerd_owns_containerd(mut self) -> Self {
        const FLAG: &str = " --containerd=/run/containerd/containerd.sock";
        let unit = self
            .docker_service
            .take()
            .expect("dockerd_owns_containerd needs a docker.service");
        assert!(
            unit.contains(FLAG),
            "no `{FLAG}` in docker.service:\n{unit}"
        );
        self.docker_service = Some(unit.replace(FLAG, ""));
        self.etc_file("/etc/systemd/system/containerd.service", "")
    }

    /// Keeps the container's /etc changes and /var/lib in `dir` (harness `PERSIST`): a second
    /// container booted with the same `dir` is the same machine rebooted, with this setup's
    /// /usr (so a new vendor unit is an OS update).
    pub fn persist(mut self, dir: impl AsRef<Path>) -> Self {
        self.persist = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Boots this root directory instead of the host's /usr (kept pristine by the harness).
    pub fn rootfs(mut self, dir: impl AsRef<Path>) -> Self {
        self.rootfs = Some(dir.as_ref().to_path_buf());
        self
    }

    /// A file under /usr with exact bytes and mode.
    pub fn usr_bytes(mut self, path: &str, bytes: &[u8], mode: u32) -> Self {
        self.usr_files
            .push((path.to_string(), bytes.to_vec(), mode));
        self
    }

    /// A file present in /etc from boot on, with exact bytes (e.g. not UTF-8).
    pub fn etc_bytes(mut self, path: &str, bytes: &[u8]) -> Self {
        self.etc_files.push((path.to_string(), bytes.to_vec()));
        self
    }

    /// A symlink under /usr or /etc, present from boot on; `target` is the link text as
    /// written (`../x.service`, `/dev/null`), dangling or not.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.links.push((path.to_string(), target.to_string()));
        self
    }

    /// Everything under the host directory `dir` (files, symlinks, modes) in /etc from boot on,
    /// e.g. what Ignition wrote into a root's /etc.
    pub fn etc_tree(mut self, dir: impl AsRef<Path>) -> Self {
        self.etc_trees.push(dir.as_ref().to_path_buf());
        self
    }

    /// The host directory `host` read-only at `inside` (e.g. /opt, which the container's
    /// volatile root otherwise lacks).
    pub fn bind_ro(mut self, host: impl AsRef<Path>, inside: &str) -> Self {
        self.binds
            .push((host.as_ref().to_path_buf(), inside.to_string()));
        self
    }

    /// With [`Setup::rootfs`]: a writable /usr (a scratch layer), so dpkg can install packages.
    pub fn writable_usr(mut self) -> Self {
        self.usr_rw = true;
        self
    }

    /// Makes the stand-in daemon fail whenever it runs in PID 1's mount namespace.
    pub fn fail_in_host_ns(self) -> Self {
        self.etc_file(FAIL_IN_HOST_NS_MARKER, "")
    }

    /// Writes the /usr and /etc overlays into `stage/usr` and `stage/etc`.
    fn stage(&self, stage: &Path) -> Result<(), String> {
        let usr = stage.join("usr");
        let etc = stage.join("etc");
        let units = "/usr/lib/systemd/system";
        let mut files: Vec<(String, Vec<u8>, u32)> = self.usr_files.clone();
        let mut wanted = Vec::new();
        if let Some(text) = &self.docker_service {
            files.push((
                format!("{units}/docker.service"),
                text.as_bytes().to_vec(),
                0o644,
            ));
            wanted.push("docker.service".to_string());
        }
        for (name, text, enabled) in &self.units {
            files.push((format!("{units}/{name}"), text.as_bytes().to_vec(), 0o644));
            if *enabled {
                wanted.push(name.clone());
            }
        }
        for (host, dest) in &self.binaries {
            let bytes = fs::read(host).map_err(|e| format!("reading {}: {e}", host.display()))?;
            files.push((dest.clone(), bytes, 0o755));
        }
        for (path, bytes, mode) in &files {
            write_under(&usr, "/usr", path, bytes, *mode)?;
        }
        for name in &wanted {
            let link = usr
                .join("lib/systemd/system/multi-user.target.wants")
                .join(name);
            mkdir_for(&link)?;
            std::os::unix::fs::symlink(format!("../{name}"), &link)
                .map_err(|e| format!("linking {}: {e}", link.display()))?;
        }
        fs::create_dir_all(&etc).map_err(|e| format!("creating {}: {e}", etc.display()))?;
        for (path, bytes) in &self.etc_files {
            write_under(&etc, "/etc", path, bytes, 0o644)?;
        }
        for (path, target) in &self.links {
            let (dir, top) = if path.starts_with("/usr/") {
                (&usr, "/usr")
            } else {
                (&etc, "/etc")
            };
            let rel = Path::new(path)
                .strip_prefix(top)
                .map_err(|_| format!("{path} is not under /usr or /etc"))?;
            let link = dir.join(rel);
            mkdir_for(&link)?;
            std::os::unix::fs::symlink(target, &link)
                .map_err(|e| format!("linking {}: {e}", link.display()))?;
        }
        for tree in &self.etc_trees {
            let out = Command::new("cp")
                .arg("-a")
                .arg(tree.join("."))
                .arg(&etc)
                .output()
                .map_err(|e| format!("cp: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "copying {} into /etc: {}",
                    tree.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(())
    }
}

/// A running container; stopped (with a leak check) when dropped.
#[derive(Debug)]
pub struct Container {
    name: String,
    leader: u32,
    bus: String,
    work: PathBuf,
    boot_time: Duration,
}

impl Container {
    /// Boots a container named after `name` (made unique per process and call).
    ///
    /// Panics with the console log if it does not come up; a live test never skips.
    pub fn boot(name: &str, setup: &Setup) -> Container {
        assert!(
            is_root(),
            "live tests boot systemd in a container and must run as root"
        );
        let name = unique_name(name);
        let stage = std::env::temp_dir().join(format!("dropfix-stage-{name}"));
        let _ = fs::remove_dir_all(&stage);
        if let Err(e) = setup.stage(&stage) {
            let _ = fs::remove_dir_all(&stage);
            panic!("cannot prepare test container {name}: {e}");
        }
        let t0 = Instant::now();
        let mut up = harness(&name);
        up.arg("up")
            .env("USR_EXTRA", stage.join("usr"))
            .env("ETC_EXTRA", stage.join("etc"));
        if let Some(rootfs) = &setup.rootfs {
            up.env("ROOTFS", rootfs);
        }
        if setup.docker {
            up.env("DOCKER", "1");
        }
        if let Some(dir) = &setup.persist {
            up.env("PERSIST", dir);
        }
        if setup.usr_rw {
            assert!(setup.rootfs.is_some(), "writable_usr needs a rootfs");
            up.env("USR_RW", "1");
        }
        if !setup.binds.is_empty() {
            // harness.sh word-splits EXTRA_NSPAWN_ARGS.
            let args: Vec<String> = setup
                .binds
                .iter()
                .map(|(host, inside)| format!("--bind-ro={}:{inside}", host.display()))
                .collect();
            assert!(
                args.iter().all(|a| !a.contains(char::is_whitespace)),
                "{args:?}"
            );
            up.env("EXTRA_NSPAWN_ARGS", args.join(" "));
        }
        let out = up.output();
        let boot_time = t0.elapsed();
        let _ = fs::remove_dir_all(&stage);
        let out = match out {
            Ok(out) => out,
            Err(e) => panic!("cannot run {}: {e}", harness_script().display()),
        };
        if !out.status.success() {
            let _ = harness(&name).arg("down").output(); // the script already cleaned up; make sure
            panic!(
                "test container {name} did not boot ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let env = String::from_utf8_lossy(&out.stdout);
        let var = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
        };
        let container = Container {
            leader: var("LEADER").and_then(|v| v.parse().ok()).unwrap_or(0),
            bus: var("BUS").unwrap_or_default(),
            work: var("WORK").map(PathBuf::from).unwrap_or_default(),
            name,
            boot_time,
        };
        assert!(
            container.leader > 0 && !container.bus.is_empty(),
            "harness.sh up printed no LEADER/BUS:\n{env}"
        );
        container
    }

    /// The unique container name (also its hostname).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's system bus, for `Systemd::connect_address` or `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn bus_address(&self) -> &str {
        &self.bus
    }

    /// Host pid of the container's PID 1 (systemd).
    pub fn leader(&self) -> u32 {
        self.leader
    }

    /// `/proc/<leader>/root`: the container's file system as PID 1 sees it (writable by root).
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// A path inside the container, as seen from the host: `path("/etc")` = `<root>/etc`.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root().join(inside.trim_start_matches('/'))
    }

    /// How long `harness.sh up` took.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The nspawn console output so far.
    pub fn console_log(&self) -> String {
        fs::read_to_string(self.work.join("console.log")).unwrap_or_default()
    }

    /// Runs `sh -c cmd` in all namespaces of the container's PID 1, with a clean environment.
    pub fn sh(&self, cmd: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a", "--", "sh", "-c", cmd])
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("SYSTEMD_PAGER", "")
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"))
    }

    /// Like [`Container::sh`], but panics unless `cmd` succeeds; returns its stdout.
    pub fn sh_ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(
            out.status.success(),
            "in container {}: `{cmd}` failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// From the host, enters the network namespace bind-mounted at `netns_path_inside` as PID 1's
    /// mount namespace sees it (`nsenter --net=<root><path> true`). The error is nsenter's stderr:
    /// with the MountFlags bug it says "reassociate to namespace 'ns/net' failed: Invalid argument".
    pub fn host_nsenter_net_ok(&self, netns_path_inside: &str) -> Result<(), String> {
        let mut net = std::ffi::OsString::from("--net=");
        net.push(self.path(netns_path_inside));
        let out = Command::new("nsenter")
            .args([net.as_os_str(), OsStr::new("true")])
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// From the host, runs `args` in the network namespace bind-mounted at `netns_path_inside`
    /// (a path without symlinks, as PID 1's mount namespace sees it); stdout, or nsenter's error.
    pub fn host_in_netns(&self, netns_path_inside: &str, args: &[&str]) -> Result<String, String> {
        let mut net = std::ffi::OsString::from("--net=");
        net.push(self.path(netns_path_inside));
        let out = Command::new("nsenter")
            .arg(net)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Waits until `unit` reports one of `states` as its ActiveState; panics with the unit's
    /// journal after `timeout`.
    pub fn wait_active_state(&self, unit: &str, states: &[&str], timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let st = self.property(unit, "org.freedesktop.systemd1.Unit", "ActiveState");
            if states.contains(&st.as_str()) {
                return st;
            }
            if t0.elapsed() > timeout {
                let log = self.sh(&format!("journalctl -b --no-pager -n 50 -u {unit}"));
                panic!(
                    "{unit} is {st}, not {states:?}, after {timeout:?}:\n{}",
                    String::from_utf8_lossy(&log.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A unit property read with busctl over the container's bus, without its type signature:
    /// `t 524288` -> `524288`, `s "active"` -> `active`, `as 1 "/a"` -> `1 "/a"`.
    pub fn property(&self, unit: &str, interface: &str, prop: &str) -> String {
        let loaded = self.busctl(&[
            "call",
            SYSTEMD,
            MANAGER_PATH,
            MANAGER,
            "LoadUnit",
            "s",
            unit,
        ]);
        let path = loaded
            .trim()
            .strip_prefix("o ")
            .map(|p| p.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("unexpected LoadUnit reply: {loaded}"));
        let value = self.busctl(&["get-property", SYSTEMD, &path, interface, prop]);
        let value = value.trim();
        match value.split_once(' ') {
            Some(("s", s)) => s.trim_matches('"').to_string(),
            Some((_, rest)) => rest.to_string(),
            None => value.to_string(),
        }
    }

    /// `busctl --address=<bus> ARGS...`; panics on failure, returns stdout.
    pub fn busctl(&self, args: &[&str]) -> String {
        let out = Command::new("busctl")
            .arg(format!("--address={}", self.bus))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run busctl: {e}"));
        assert!(
            out.status.success(),
            "busctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file inside the container (creating parent directories), e.g. a drop-in.
    pub fn write_file(&self, inside: &str, text: &str) {
        let path = self.path(inside);
        mkdir_for(&path).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// A host command with `DBUS_SYSTEM_BUS_ADDRESS` pointing at this container's bus.
    pub fn host_command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus);
        cmd
    }
}

/// Real-docker helpers (containers booted from [`Setup::real_docker`]).
impl Container {
    /// `docker import` of the busybox tar in the rootfs as `local/busybox:1` (no registry).
    pub fn docker_import_busybox(&self) -> &'static str {
        const IMAGE: &str = "local/busybox:1";
        self.sh_ok(&format!(
            "docker import {BUSYBOX_IMAGE_TAR} {IMAGE} >/dev/null"
        ));
        IMAGE
    }

    /// A unit's MainPID as the container sees it (the pid for `/proc/<pid>` inside).
    pub fn main_pid(&self, unit: &str) -> u32 {
        let pid = self.property(unit, "org.freedesktop.systemd1.Service", "MainPID");
        pid.parse()
            .unwrap_or_else(|_| panic!("MainPID of {unit}: {pid}"))
    }

    /// Whether the container process `pid` (a pid inside it) shares PID 1's mount namespace.
    pub fn in_pid1_mount_ns(&self, pid: u32) -> bool {
        let ns = self.sh_ok(&format!("readlink /proc/1/ns/mnt /proc/{pid}/ns/mnt"));
        let ns: Vec<&str> = ns.lines().collect();
        assert_eq!(ns.len(), 2, "{ns:?}");
        ns[0] == ns[1]
    }

    /// A docker container's sandbox (its network namespace file) as a symlink-free path inside
    /// this container: `/var/run/docker/netns/<id>` becomes `/run/docker/netns/<id>`.
    pub fn sandbox_key(&self, docker_container: &str) -> String {
        let key = self.sh_ok(&format!(
            "docker inspect -f '{{{{.NetworkSettings.SandboxKey}}}}' {docker_container}"
        ));
        let key = key.trim();
        assert!(!key.is_empty(), "{docker_container} has no sandbox");
        self.sh_ok(&format!("realpath -m {key}")).trim().to_string()
    }

    /// A /proc-like directory of this container as the host sees it, for code that reads a
    /// `proc_root` (e.g. `dropfix::netns`): `1` links to the container's PID 1 (`/proc/<leader>`,
    /// so `1/root` is its file system), every other entry to a host process in the container's
    /// PID namespace, by host PID. A snapshot: processes started later are missing.
    pub fn proc_view(&self) -> tempfile::TempDir {
        let view = tempfile::tempdir().expect("temp dir");
        let pid_ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let ours = pid_ns(&self.leader.to_string());
        assert!(ours.is_some(), "cannot read the container's PID namespace");
        std::os::unix::fs::symlink(format!("/proc/{}", self.leader), view.path().join("1"))
            .expect("linking 1");
        for e in fs::read_dir("/proc").expect("/proc").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            if pid == self.leader || pid == 1 || pid_ns(&name) != ours {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), view.path().join(&name));
        }
        view
    }

    /// Host PID -> PID inside this container (the last `NSpid` of /proc/<pid>/status).
    pub fn inner_pid(&self, host_pid: u32) -> Option<u32> {
        fs::read_to_string(format!("/proc/{host_pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Removes every docker container (dockerd's shutdown would wait 10 s for a running one).
    pub fn docker_rm_all(&self) {
        let _ = self.sh("docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = harness(&self.name).arg("down").output();
        let problem = match out {
            Ok(out) if out.status.success() => return,
            Ok(out) => format!(
                "harness.sh down failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("cannot run harness.sh down: {e}"),
        };
        if std::thread::panicking() {
            eprintln!("test container {}: {problem}", self.name); // a second panic would abort
        } else {
            panic!("test container {}: {problem}", self.name);
        }
    }
}

/// tests/harness/harness.sh next to this file (also when this module is included from elsewhere).
pub fn harness_script() -> PathBuf {
    if let Some(p) = std::env::var_os("DROPFIX_HARNESS") {
        return PathBuf::from(p);
    }
    let this = Path::new(file!());
    let this = if this.is_absolute() {
        this.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(this)
    };
    this.parent()
        .and_then(Path::parent)
        .map(|tests| tests.join("harness/harness.sh"))
        .unwrap_or_else(|| PathBuf::from("tests/harness/harness.sh"))
}

fn harness(name: &str) -> Command {
    let mut cmd = Command::new(harness_script());
    cmd.env("NAME", name)
        .env_remove("USR_EXTRA")
        .env_remove("ETC_EXTRA")
        .env_remove("ROOTFS")
        .env_remove("DOCKER")
        .env_remove("PERSIST")
        .env_remove("EXTRA_NSPAWN_ARGS")
        .env_remove("USR_RW");
    cmd
}

/// The dropfix binary that live tests install in containers: `$DROPFIX_BIN` when set (e.g. the
/// static release build that tests/run makes), else the one cargo built for this test run.
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

/// The cached Debian rootfs with docker.io, openssh-server and busybox (tests/harness/rootfs.sh
/// builds it when it is missing, about 90 s once per machine). Panics if it cannot be had: a
/// live test never skips.
pub fn docker_rootfs() -> PathBuf {
    let script = harness_script().with_file_name("rootfs.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}); it needs root and the Debian mirror:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The cached minimal Debian rootfs of `suite` (bullseye, bookworm or trixie: systemd 247, 252,
/// 257) from tests/harness/systemd-rootfs.sh, built when missing (one to two minutes once per
/// machine). Panics if it cannot be had: a live test never skips.
pub fn systemd_rootfs(suite: &str) -> PathBuf {
    let script = harness_script().with_file_name("systemd-rootfs.sh");
    let out = Command::new(&script)
        .arg(suite)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {suite} failed ({}); it needs root and a Debian mirror:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A vendor unit the way old ones had it: `MountFlags=slave` first in `[Service]`.
pub fn with_mount_flags_slave(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len() + 32);
    let mut done = false;
    for line in unit.split_inclusive('\n') {
        out.push_str(line);
        if !done && line.trim_end() == "[Service]" {
            out.push_str("MountFlags=slave\n");
            done = true;
        }
    }
    assert!(done, "no [Service] section in:\n{unit}");
    out
}

/// `test_name-<pid>-<n>`, limited to what nspawn accepts as a machine name.
fn unique_name(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(36)
        .collect();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{n}", clean.trim_matches('-'), std::process::id())
}

fn is_root() -> bool {
    // the effective uid (second field of "Uid:")
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn mkdir_for(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) => {
            fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
        }
        None => Ok(()),
    }
}

/// Writes `bytes` for the absolute container path `path` (below `top`, e.g. /usr) into `dir`.
fn write_under(dir: &Path, top: &str, path: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    let rel = Path::new(path)
        .strip_prefix(top)
        .map_err(|_| format!("{path} is not under {top}"))?;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || rel.as_os_str().is_empty() {
        return Err(format!("{path}: expected a plain path under {top}"));
    }
    let dest = dir.join(rel);
    mkdir_for(&dest)?;
    fs::write(&dest, bytes).map_err(|e| format!("writing {}: {e}", dest.display()))?;
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", dest.display()))
}
