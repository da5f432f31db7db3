//! Real dockerd end to end: Debian's docker.io (dockerd, containerd, runc) in a throwaway
//! container, its docker.service given `MountFlags=slave` the way old vendor units had it, then
//! `dropfix fix --yes`. Needs root; the rootfs is built once per machine and cached
//! (tests/harness/rootfs.sh). Never skips.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{dropfix_bin, Container, Setup};

const UP: Duration = Duration::from_secs(60);

fn mount_flags(c: &Container) -> String {
    c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "MountFlags",
    )
}

#[test]
fn real_dockerd_sandboxes_cannot_be_entered_with_mountflags_slave_until_fix_yes() {
    let setup = Setup::real_docker().install_binary(dropfix_bin(), "/usr/local/bin/dropfix");
    let c = Container::boot("docker-e2e", &setup);
    c.wait_active_state("docker.service", &["active"], UP);
    assert_eq!(
        mount_flags(&c),
        "524288",
        "the vendor unit's MountFlags=slave"
    );
    let dockerd = c.main_pid("docker.service");
    assert!(
        !c.in_pid1_mount_ns(dockerd),
        "dockerd has a mount namespace of its own"
    );
    let image = c.docker_import_busybox();

    // With the flag, containerd (in PID 1's namespace) cannot see the rootfs dockerd mounted
    // in its own, so `docker run` may fail outright; either way its sandbox is made in dockerd's
    // namespace only.
    let run = c.sh(&format!(
        "docker run -d --name before {image} sleep 600 2>&1"
    ));
    eprintln!(
        "with MountFlags=slave: docker run -> {} {}",
        run.status,
        String::from_utf8_lossy(&run.stdout).trim()
    );
    let sandboxes = c.sh_ok(&format!("nsenter -t {dockerd} -m ls /run/docker/netns"));
    let sandboxes: Vec<&str> = sandboxes.split_whitespace().collect();
    assert!(!sandboxes.is_empty(), "dockerd made no sandbox");
    for id in &sandboxes {
        let inside = format!("/run/docker/netns/{id}");
        if run.status.success() {
            // A running container: dockerd itself can enter its sandbox ...
            c.sh_ok(&format!(
                "nsenter -t {dockerd} -m nsenter --net={inside} true"
            ));
        }
        // ... the host cannot: the bind mount never reached PID 1's mount namespace, where the
        // sandbox is a plain empty file.
        let err = c
            .host_in_netns(&inside, &["ip", "addr"])
            .expect_err("sandbox must not be enterable from the host");
        assert!(err.contains("Invalid argument"), "{inside}: {err}");
    }
    c.docker_rm_all();

    let out = c.sh("dropfix fix --yes --format json </dev/null");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dropfix fix --yes: {stdout}\n{stderr}"
    );
    let j: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(j["changed"], true);
    assert_eq!(j["restarted"], true);
    assert_eq!(j["rolled_back"], false);
    let u = &j["units"][0];
    assert_eq!(u["unit"], "docker.service");
    assert_eq!(u["strategy"], "drop-in");
    assert_eq!(u["job_result"], "done");
    assert_eq!(u["verify"]["ok"], true, "{}", u["verify"]);

    assert_eq!(mount_flags(&c), "0");
    let dockerd = c.main_pid("docker.service");
    assert!(
        c.in_pid1_mount_ns(dockerd),
        "dockerd in PID 1's mount namespace"
    );
    c.sh_ok(&format!("docker run -d --name after {image} sleep 600"));
    let key = c.sandbox_key("after");
    assert!(key.starts_with("/run/docker/netns/"), "{key}");
    let addr = c
        .host_in_netns(&key, &["ip", "-br", "addr"])
        .unwrap_or_else(|e| panic!("nsenter --net={key} from the host: {e}"));
    eprintln!("after the fix, host: nsenter --net=<root>{key} ip -br addr:\n{addr}");
    let eth0 = addr
        .lines()
        .find(|l| l.starts_with("eth0"))
        .unwrap_or_else(|| panic!("no eth0 in the sandbox:\n{addr}"));
    assert!(eth0.contains("172.17."), "{eth0}");
    // The same through the path ip netns uses.
    c.sh_ok("ln -s /run/docker/netns /run/netns");
    let id = key.rsplit('/').next().unwrap_or_default();
    c.sh_ok(&format!("ip netns exec {id} ip link show eth0"));
    c.docker_rm_all();
}

/// dockerd's main pid, or 0.
fn dockerd_pid(c: &Container) -> u32 {
    c.main_pid("docker.service")
}

/// Every file under /etc/systemd and /var/lib/dropfix in the container, with its bytes.
fn etc_state(c: &Container) -> String {
    c.sh_ok(
        "find /etc/systemd /var/lib/dropfix -xdev \\( -type f -o -type l \\) 2>/dev/null | sort | \
         while read f; do echo \"== $f\"; cat \"$f\" 2>/dev/null || readlink \"$f\"; done",
    )
}

/// The consent rule against Debian's real dockerd: without a terminal and without a flag,
/// fix, revert and set --restart write nothing and leave dockerd alone; --no-restart defers
/// and the next --yes performs the deferred restart, for fix and for revert.
#[test]
fn real_dockerd_consent_rule_for_fix_revert_and_set() {
    let setup = Setup::real_docker().install_binary(dropfix_bin(), "/usr/local/bin/dropfix");
    let c = Container::boot("docker-consent", &setup);
    c.wait_active_state("docker.service", &["active"], UP);
    let pid = dockerd_pid(&c);
    let pristine = etc_state(&c);

    for cmd in ["fix", "set docker Service.LimitNOFILE=65536 --restart"] {
        let out = c.sh(&format!("dropfix {cmd} </dev/null"));
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--yes"), "{cmd}: {err}");
        assert_eq!(etc_state(&c), pristine, "{cmd}: /etc byte-identical");
        assert_eq!(dockerd_pid(&c), pid, "{cmd}: dockerd not restarted");
    }

    // fix --no-restart: written and reloaded, dockerd untouched; fix --yes restarts it.
    c.sh_ok("dropfix fix --no-restart </dev/null");
    assert_eq!(mount_flags(&c), "0");
    assert_eq!(dockerd_pid(&c), pid);
    assert!(
        !c.in_pid1_mount_ns(pid),
        "the old dockerd keeps its own namespace"
    );
    let fixed = etc_state(&c);
    c.sh_ok("dropfix fix --yes </dev/null");
    assert_eq!(etc_state(&c), fixed, "nothing more written");
    let pid = dockerd_pid(&c);
    assert!(c.in_pid1_mount_ns(pid), "restarted into PID 1's namespace");

    // revert without a flag: nothing restored; --no-restart defers; --yes performs it.
    let out = c.sh("dropfix revert </dev/null");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(etc_state(&c), fixed);
    assert_eq!(dockerd_pid(&c), pid);
    c.sh_ok("dropfix revert --no-restart </dev/null");
    assert_eq!(etc_state(&c), pristine);
    assert_eq!(mount_flags(&c), "524288");
    assert_eq!(dockerd_pid(&c), pid, "restart deferred");
    let out = c.sh_ok("dropfix revert --yes --format json </dev/null");
    let j: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(j["restarted"][0], "docker.service", "{j}");
    let pid = dockerd_pid(&c);
    assert!(!c.in_pid1_mount_ns(pid), "MountFlags=slave in force again");
    assert_eq!(etc_state(&c), pristine);
}
