//! First boot the CoreOS way: packaging/dropfix-firstboot.service, enabled, runs
//! `dropfix fix --no-restart` before docker's first start, so docker comes up fixed with no
//! restart at all. Proven on a real systemd (harness containers), with the stand-in daemon and
//! with Debian's real dockerd, and across a reboot into an OS update (harness `PERSIST`: the
//! same /etc and /var/lib, a new /usr). Needs root; never skips.

mod support;

use std::time::Duration;
use support::{dropfix_bin, Container, Setup, NETNS_PATH};

const UNIT: &str = "dropfix-firstboot.service";
const UNIT_TEXT: &str = include_str!("../packaging/dropfix-firstboot.service");
/// Where the unit's ExecStart (and the .deb) expects the binary.
const BIN: &str = "/usr/bin/dropfix";
const UP: Duration = Duration::from_secs(60);

fn prop(c: &Container, unit: &str, iface: &str, name: &str) -> String {
    c.property(unit, &format!("org.freedesktop.systemd1.{iface}"), name)
}

fn mono(c: &Container, unit: &str, name: &str) -> u64 {
    let v = prop(c, unit, "Unit", name);
    v.parse().unwrap_or_else(|_| panic!("{unit} {name}: {v}"))
}

/// The oneshot ran once, succeeded, and had finished before docker's start began.
fn assert_firstboot_ran_before_docker(c: &Container) {
    c.wait_active_state("docker.service", &["active"], UP);
    assert_eq!(
        prop(c, UNIT, "Unit", "ActiveState"),
        "active",
        "RemainAfterExit=yes"
    );
    assert_eq!(prop(c, UNIT, "Service", "Result"), "success");
    assert_eq!(prop(c, UNIT, "Service", "ExecMainStatus"), "0");
    let fixed_at = mono(c, UNIT, "ActiveEnterTimestampMonotonic");
    let docker_from = mono(c, "docker.service", "InactiveExitTimestampMonotonic");
    assert!(fixed_at > 0 && docker_from > 0);
    assert!(
        fixed_at <= docker_from,
        "docker.service left inactive at {docker_from}, before {UNIT} finished at {fixed_at}"
    );
    assert_eq!(
        prop(c, "docker.service", "Service", "MountFlags"),
        "0",
        "docker's first start already without MountFlags"
    );
    let journal = c.sh_ok(&format!("journalctl -b --no-pager -o cat -u {UNIT}"));
    assert!(
        journal.contains("docker.service is not running, so it was not started"),
        "dropfix's report in the journal:\n{journal}"
    );
}

/// How often systemd started docker.service this boot ("Started ..." from PID 1).
fn docker_starts_in_journal(c: &Container) -> usize {
    // MESSAGE_ID of "Started <unit>." (SD_MESSAGE_UNIT_STARTED)
    let out = c.sh_ok(
        "journalctl -b --no-pager -o cat _PID=1 UNIT=docker.service \
         MESSAGE_ID=39f53479d3a045ac8e11786248231fbf",
    );
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn firstboot_unit_fixes_the_stand_in_docker_before_its_first_and_only_start() {
    let setup = Setup::new()
        .install_binary(dropfix_bin(), BIN)
        .enabled_unit(UNIT, UNIT_TEXT);
    let c = Container::boot("firstboot-standin", &setup);
    assert_firstboot_ran_before_docker(&c);
    let starts = std::fs::read_to_string(c.path("/run/fake-dockerd.starts")).unwrap_or_default();
    assert_eq!(starts.lines().count(), 1, "docker started exactly once");
    let pid = c.main_pid("docker.service");
    assert!(c.in_pid1_mount_ns(pid), "docker in PID 1's mount namespace");
    c.host_nsenter_net_ok(NETNS_PATH)
        .expect("netns enterable from the host right after boot");
    assert!(c
        .path("/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf")
        .exists());
}

#[test]
fn firstboot_unit_fixes_real_dockerd_before_its_first_and_only_start() {
    let setup = Setup::real_docker()
        .install_binary(dropfix_bin(), BIN)
        .enabled_unit(UNIT, UNIT_TEXT);
    let c = Container::boot("firstboot-docker", &setup);
    assert_firstboot_ran_before_docker(&c);
    assert_eq!(
        docker_starts_in_journal(&c),
        1,
        "docker started exactly once"
    );
    assert_eq!(prop(&c, "docker.service", "Service", "NRestarts"), "0");
    let dockerd = c.main_pid("docker.service");
    assert!(
        c.in_pid1_mount_ns(dockerd),
        "dockerd in PID 1's mount namespace"
    );
    let image = c.docker_import_busybox();
    c.sh_ok(&format!("docker run -d --name first {image} sleep 600"));
    let key = c.sandbox_key("first");
    let addr = c
        .host_in_netns(&key, &["ip", "-br", "addr"])
        .unwrap_or_else(|e| panic!("nsenter --net={key} from the host: {e}"));
    assert!(
        addr.lines().any(|l| l.starts_with("eth0")),
        "eth0 in {key}:\n{addr}"
    );
    c.docker_rm_all();
}

#[test]
fn firstboot_unit_is_skipped_where_there_is_no_docker() {
    let setup = Setup::new()
        .no_docker()
        .install_binary(dropfix_bin(), BIN)
        .enabled_unit(UNIT, UNIT_TEXT);
    let c = Container::boot("firstboot-nodocker", &setup);
    assert_eq!(prop(&c, UNIT, "Unit", "ActiveState"), "inactive");
    assert_eq!(prop(&c, UNIT, "Unit", "ConditionResult"), "false");
    assert!(!c.path("/etc/systemd/system/docker.service.d").exists());
}

/// The stand-in vendor unit as an OS update brings it: a new ExecStart flag.
fn docker_service_v2() -> String {
    let v1 = support::DOCKER_SERVICE;
    let v2 = v1.replace(
        "ExecStart=/usr/local/sbin/fake-dockerd\n",
        "ExecStart=/usr/local/sbin/fake-dockerd --v2\n",
    );
    assert_ne!(v1, v2);
    v2
}

const COPY: &str = "/etc/systemd/system/docker.service";
const OWN_DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";

#[test]
fn after_an_os_update_the_boot_unit_moves_the_copy_before_dockers_first_start() {
    let machine = tempfile::tempdir().expect("a directory for the machine's /etc and /var/lib");
    // Boot 1: vendor v1. The harness runs systemd 252, which takes a drop-in; to get a copy
    // that dropfix chose (not one forced with --strategy, which would stay a copy) dropfix
    // plans for systemd 231, as on CoreOS 1192.
    {
        let setup = Setup::new()
            .install_binary(dropfix_bin(), BIN)
            .persist(machine.path());
        let c = Container::boot("update-boot1", &setup);
        c.wait_active_state("docker.service", &["active"], UP);
        c.sh_ok(&format!("{BIN} fix --systemd-version 231 --yes"));
        let copy = std::fs::read_to_string(c.path(COPY)).expect("dropfix's full copy");
        assert!(copy.contains("#MountFlags=slave"), "{copy}");
        let state = std::fs::read_to_string(c.path("/var/lib/dropfix/state.json")).expect("state");
        assert!(state.contains("\"chosen\": \"auto\""), "{state}");
        assert_eq!(prop(&c, "docker.service", "Service", "MountFlags"), "0");
        c.sh_ok("systemctl stop docker.service");
    } // shut down
    assert!(machine
        .path()
        .join("etc-upper/systemd/system/docker.service")
        .exists());

    // Boot 2: vendor v2 under /usr, the same /etc and /var/lib, the boot unit enabled.
    let setup = Setup::new()
        .docker_service(&docker_service_v2())
        .install_binary(dropfix_bin(), BIN)
        .enabled_unit(UNIT, UNIT_TEXT)
        .persist(machine.path());
    let c = Container::boot("update-boot2", &setup);
    assert_firstboot_ran_before_docker(&c);
    assert!(!c.path(COPY).exists(), "the copy is gone");
    assert!(c.path(OWN_DROPIN).exists(), "dropfix's drop-in is there");
    let fragment = prop(&c, "docker.service", "Unit", "FragmentPath");
    assert!(
        fragment.ends_with("lib/systemd/system/docker.service"),
        "systemd loads the vendor file again: {fragment}"
    );
    let exec = prop(&c, "docker.service", "Service", "ExecStart");
    assert!(exec.contains("--v2"), "docker runs v2's ExecStart: {exec}");
    assert_eq!(prop(&c, "docker.service", "Service", "NRestarts"), "0");
    let starts = std::fs::read_to_string(c.path("/run/fake-dockerd.starts")).unwrap_or_default();
    assert_eq!(starts.lines().count(), 1, "docker started once this boot");
    let pid = c.main_pid("docker.service");
    assert!(c.in_pid1_mount_ns(pid), "docker in PID 1's mount namespace");
    c.host_nsenter_net_ok(NETNS_PATH)
        .expect("netns enterable from the host");
    let journal = c.sh_ok(&format!("journalctl -b --no-pager -o cat -u {UNIT}"));
    assert!(
        journal.contains("no longer needs the copy"),
        "the boot unit says what it did:\n{journal}"
    );
    // Nothing left to do, and doctor agrees.
    c.sh_ok(&format!("{BIN} fix --check"));
    c.sh_ok(&format!("{BIN} doctor"));
}

// ------------------------------------------------------------------------------------------
// Ignition: `dropfix generate ignition`, applied by Ignition itself, then the first boot.
// ------------------------------------------------------------------------------------------

/// The full Ignition binary Debian's ignition package ships for its dracut module.
const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";

/// Serves `body` to every HTTP request on 127.0.0.1, from a thread; returns the URL.
fn serve(body: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/dropfix-x86_64-linux-static")
}

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ignition's fetch and files stages, as the initramfs runs them, on `root` (a directory), with
/// the config from the `file` platform. Returns whether Ignition succeeded, and its log.
fn ignition_files(work: &std::path::Path, root: &std::path::Path, config: &str) -> (bool, String) {
    let cfg = work.join("config.ign");
    std::fs::write(&cfg, config).unwrap();
    // Debian builds Ignition to relabel what it wrote for SELinux, as Fedora CoreOS needs: it
    // reads SELINUXTYPE from the root's /etc/selinux/config and runs `setfiles`. Neither this
    // host nor the test containers use SELinux, so the relabel is a no-op stand-in on PATH.
    std::fs::create_dir_all(root.join("etc/selinux")).unwrap();
    std::fs::write(
        root.join("etc/selinux/config"),
        "SELINUX=disabled\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    let stubs = work.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    std::fs::write(stubs.join("setfiles"), "#!/bin/sh\ncat >/dev/null\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        stubs.join("setfiles"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut log = String::new();
    for stage in ["fetch", "files"] {
        let out = std::process::Command::new(IGNITION)
            .args(["-platform", "file", "-stage", stage, "-log-to-stdout"])
            .arg("-root")
            .arg(root)
            .arg("-config-cache")
            .arg(work.join("ignition.json"))
            .arg("-state-file")
            .arg(work.join("state"))
            .arg("-neednet")
            .arg(work.join("neednet"))
            .env("IGNITION_CONFIG_FILE", &cfg)
            .env("PATH", &path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {IGNITION} (apt-get install ignition): {e}"));
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return (false, log);
        }
    }
    (true, log)
}

#[test]
fn ignition_config_from_generate_installs_the_binary_and_docker_first_starts_fixed() {
    let bin = dropfix_bin();
    let bytes = std::fs::read(&bin).unwrap();
    let url = serve(bytes.clone());
    let config = run_ok(
        std::process::Command::new(&bin)
            .args(["generate", "ignition", "--url", &url, "--binary"])
            .arg(&bin),
    );
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (ok, log) = ignition_files(work.path(), &root, &config);
    assert!(ok, "Ignition failed:\n{log}");

    // What Ignition wrote: the downloaded binary (hash checked), the unit byte for byte, the
    // drop-in, and the enablement as a preset for the first boot.
    let installed = root.join("opt/bin/dropfix");
    assert_eq!(std::fs::read(&installed).unwrap(), bytes);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system").join(UNIT)).unwrap(),
        UNIT_TEXT
    );
    assert!(root
        .join("etc/systemd/system/dropfix-firstboot.service.d/10-opt-bin.conf")
        .is_file());
    let preset =
        std::fs::read_to_string(root.join("etc/systemd/system-preset/20-ignition.preset")).unwrap();
    assert!(
        preset.lines().any(|l| l == format!("enable {UNIT}")),
        "{preset}"
    );
    // systemd applies presets on a machine's first boot (no machine-id yet); the harness seeds
    // one, so apply them here as PID 1 would: enable-only, for the units of this root.
    run_ok(
        std::process::Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["preset-all", "--preset-mode=enable-only"]),
    );
    let link = root
        .join("etc/systemd/system/multi-user.target.wants")
        .join(UNIT);
    assert_eq!(
        std::fs::read_link(&link).expect("the wants link"),
        std::path::Path::new("/etc/systemd/system").join(UNIT)
    );

    let etc = root.join("etc");
    std::fs::remove_dir_all(etc.join("selinux")).unwrap();
    let setup = Setup::new()
        .etc_tree(&etc)
        .bind_ro(root.join("opt"), "/opt");
    let c = Container::boot("firstboot-ignition", &setup);
    assert_firstboot_ran_before_docker(&c);
    assert_eq!(prop(&c, "docker.service", "Service", "NRestarts"), "0");
    let starts = std::fs::read_to_string(c.path("/run/fake-dockerd.starts")).unwrap_or_default();
    assert_eq!(starts.lines().count(), 1, "docker started exactly once");
    assert!(c.in_pid1_mount_ns(c.main_pid("docker.service")));
    let exec = c.sh_ok(&format!("systemctl show -p ExecStart --value {UNIT}"));
    assert!(exec.contains("path=/opt/bin/dropfix "), "{exec}");
}

#[test]
fn ignition_refuses_a_binary_whose_hash_differs_and_installs_nothing() {
    let bin = dropfix_bin();
    let mut tampered = std::fs::read(&bin).unwrap();
    if let Some(b) = tampered.last_mut() {
        *b ^= 0xff;
    }
    let url = serve(tampered);
    let config = run_ok(
        std::process::Command::new(&bin)
            .args(["generate", "ignition", "--url", &url, "--binary"])
            .arg(&bin),
    );
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (ok, log) = ignition_files(work.path(), &root, &config);
    assert!(!ok, "Ignition accepted a tampered binary:\n{log}");
    assert!(
        log.contains("hash") || log.contains("verification"),
        "{log}"
    );
    assert!(!root.join("opt/bin/dropfix").exists());
}
