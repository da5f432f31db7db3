//! Errors from systemd on a real systemd (throwaway containers, tests/harness): the bus
//! vanishing in the middle of a restart, a restart job that outlasts `--timeout`, a reload
//! systemd refuses, a unit systemd does not know, no permission, a read-only /etc, a planted
//! lock file, and 16 `dropfix fix --yes` at once. Each ends with a clear one-line message and
//! the host in a state the test names and checks.

mod support;

use std::time::{Duration, Instant};
use support::{Container, Setup, NETNS_PATH};

const DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";

fn setup() -> Setup {
    Setup::new().install_binary(support::dropfix_bin(), "/usr/local/bin/dropfix")
}

/// The stand-in docker.service, but its start takes `secs` seconds.
fn slow_docker(secs: u32) -> String {
    support::DOCKER_SERVICE.replace(
        "ExecStart=",
        &format!("ExecStartPre=/bin/sleep {secs}\nExecStart="),
    )
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn dropfix(c: &Container, args: &str) -> Run {
    let out = c.sh(&format!("dropfix {args} </dev/null"));
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

/// The one error line, checked for shape.
fn one_error_line(r: &Run) -> String {
    let msg = r.stderr.trim();
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {msg}", r.stdout);
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    assert!(msg.starts_with("dropfix: error: "), "{msg}");
    eprintln!("{msg}");
    msg.to_string()
}

fn starts(c: &Container) -> usize {
    std::fs::read_to_string(c.path("/run/fake-dockerd.starts"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A property read with systemctl over systemd's private socket (works without dbus).
fn show(c: &Container, prop: &str) -> String {
    c.sh_ok(&format!("systemctl show -p {prop} --value docker.service"))
        .trim()
        .to_string()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "{what}: not after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bus_vanishing_during_the_restart_exits_1_and_leaves_the_fix_loaded_and_the_restart_to_systemd() {
    let c = Container::boot("hl-busgone", &setup().docker_service(&slow_docker(3)));
    assert_eq!(starts(&c), 1);
    c.sh_ok(
        "(dropfix fix --yes </dev/null >/run/df.out 2>/run/df.err; echo $? >/run/df.rc) \
         >/dev/null 2>&1 &",
    );
    // The restart job is running (ExecStartPre sleeps): take the system bus away.
    wait_for("docker.service activating", Duration::from_secs(30), || {
        show(&c, "ActiveState") == "activating"
    });
    c.sh_ok("systemctl stop dbus.socket dbus.service");
    wait_for("dropfix to exit", Duration::from_secs(60), || {
        c.path("/run/df.rc").exists()
    });
    let r = Run {
        code: std::fs::read_to_string(c.path("/run/df.rc"))
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
        stdout: std::fs::read_to_string(c.path("/run/df.out")).unwrap(),
        stderr: std::fs::read_to_string(c.path("/run/df.err")).unwrap(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let msg = one_error_line(&r);
    assert!(
        msg.contains("lost the connection to the system bus"),
        "{msg}"
    );
    assert!(
        msg.contains("nothing undone: the system bus is gone"),
        "{msg}"
    );
    assert!(
        msg.contains("the override stays written and loaded, and systemd finishes the restart of docker.service by itself"),
        "{msg}"
    );
    // The known state: the override on disk and loaded, and systemd finishing the restart
    // on its own, so docker runs without MountFlags.
    assert!(c.path(DROPIN).exists());
    wait_for("docker.service active", Duration::from_secs(30), || {
        show(&c, "ActiveState") == "active"
    });
    assert_eq!(show(&c, "MountFlags"), "");
    assert_eq!(starts(&c), 2);
    c.host_nsenter_net_ok(NETNS_PATH)
        .expect("netns enterable: the restart finished with the fix");
    // Once the bus is back, a rerun finds nothing left to do.
    c.sh_ok("systemctl start dbus.socket dbus.service");
    wait_for("systemd back on the bus", Duration::from_secs(30), || {
        c.sh("busctl get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version")
            .status
            .success()
    });
    let r = dropfix(&c, "fix --yes --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"changed\": false"), "{}", r.stdout);
    assert_eq!(starts(&c), 2);
}

#[test]
fn restart_outlasting_timeout_rolls_back_and_says_where_the_jobs_are() {
    let c = Container::boot("hl-timeout", &setup().docker_service(&slow_docker(4)));
    let before = std::fs::read_dir(c.path("/etc/systemd/system"))
        .map(|d| d.count())
        .ok();
    let r = dropfix(&c, "fix --yes --timeout 1");
    let msg = one_error_line(&r);
    assert!(msg.contains("timeout"), "{msg}");
    assert!(msg.contains("restored the previous files"), "{msg}");
    // Known state: the previous files, loaded; docker ends active with MountFlags=slave once
    // systemd finishes the restart dropfix asked for with them.
    assert!(!c.path(DROPIN).exists());
    assert_eq!(
        std::fs::read_dir(c.path("/etc/systemd/system"))
            .map(|d| d.count())
            .ok(),
        before
    );
    assert!(!c.path("/var/lib/dropfix").exists());
    c.wait_active_state("docker.service", &["active"], Duration::from_secs(30));
    assert_eq!(show(&c, "MountFlags"), "slave");
}

#[test]
fn reload_refused_by_systemd_puts_the_files_back() {
    let c = Container::boot("hl-reload", &setup());
    // systemd refuses to reload with less than 16 MiB free on /run.
    c.sh_ok(
        "avail=$(df --output=avail -B1 /run | tail -1); \
         fallocate -l $((avail - 4 * 1024 * 1024)) /run/fill",
    );
    let r = dropfix(&c, "fix --yes");
    c.sh_ok("rm -f /run/fill");
    let msg = one_error_line(&r);
    assert!(msg.contains("daemon-reload failed"), "{msg}");
    assert!(msg.contains("not enough space"), "{msg}");
    assert!(msg.contains("restored the previous files"), "{msg}");
    // Known state: nothing of dropfix's on disk, and systemd never loaded it.
    assert!(!c.path(DROPIN).exists());
    assert!(!c.path("/var/lib/dropfix").exists());
    assert_eq!(show(&c, "MountFlags"), "slave");
    assert_eq!(starts(&c), 1, "not restarted");
    // With space again, the fix goes through.
    let r = dropfix(&c, "fix --yes");
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn unit_systemd_does_not_know_is_a_clear_error_before_anything_is_written() {
    let c = Container::boot("hl-nounit", &setup());
    let r = dropfix(&c, "fix --yes no-such-unit");
    let msg = one_error_line(&r);
    assert!(
        msg.contains("no-such-unit.service: unit not found"),
        "{msg}"
    );
    assert!(!c
        .path("/etc/systemd/system/no-such-unit.service.d")
        .exists());
    assert!(!c.path("/var/lib/dropfix").exists());
    // systemd's own NoSuchUnit error (RestartUnit of a unit it cannot load) reads as one line.
    let mut m = dropfix::manager::Systemd::connect_address(c.bus_address()).unwrap();
    use dropfix::manager::ServiceManager;
    let e = m
        .restart("no-such-unit.service", Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        "restarting no-such-unit.service: unit no-such-unit.service not found"
    );
}

#[test]
fn no_permission_and_read_only_etc_are_clear_errors_that_change_nothing() {
    let c = Container::boot("hl-perm", &setup());
    let r = dropfix(&c, "fix --yes");
    assert_eq!(r.code, 0, "sanity: {}", r.stderr);
    let r = dropfix(&c, "revert --yes");
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Not root: refused before the lock, the bus or a file.
    let out =
        c.sh("setpriv --reuid=65534 --regid=65534 --clear-groups dropfix fix --yes </dev/null");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let msg = one_error_line(&r);
    assert!(msg.contains("needs root"), "{msg}");
    // Root, but /etc/systemd/system is read-only: the write fails, nothing is left behind.
    c.sh_ok("mkdir -p /etc/systemd/system && mount --bind -o ro /etc/systemd/system /etc/systemd/system");
    let r = dropfix(&c, "fix --yes");
    c.sh_ok("umount /etc/systemd/system");
    let msg = one_error_line(&r);
    assert!(msg.contains("Read-only file system"), "{msg}");
    assert!(!c.path(DROPIN).exists());
    assert!(
        !c.path("/var/lib/dropfix").exists(),
        "{msg}\n{}",
        String::from_utf8_lossy(
            &c.sh("find /var/lib/dropfix -ls; cat /var/lib/dropfix/state.json")
                .stdout
        )
    );
    assert_eq!(show(&c, "MountFlags"), "slave");
    assert_eq!(
        starts(&c),
        3,
        "two restarts for fix and revert, none for the failures"
    );
}

#[test]
fn planted_lock_file_is_refused_and_nothing_is_written() {
    let c = Container::boot("hl-lock", &setup());
    c.sh_ok("echo keep > /etc/victim && ln -s /etc/victim /run/dropfix.lock");
    let r = dropfix(&c, "fix --yes");
    let msg = one_error_line(&r);
    assert!(
        msg.contains("refusing the lock file /run/dropfix.lock"),
        "{msg}"
    );
    assert_eq!(c.sh_ok("cat /etc/victim"), "keep\n");
    assert!(!c.path(DROPIN).exists());
    c.sh_ok("rm /run/dropfix.lock && touch /run/dropfix.lock && chown 65534 /run/dropfix.lock");
    let msg = one_error_line(&dropfix(&c, "fix --yes"));
    assert!(msg.contains("not a plain file owned by uid 0"), "{msg}");
    c.sh_ok("rm /run/dropfix.lock");
    assert_eq!(dropfix(&c, "fix --yes").code, 0);
}

#[test]
fn sixteen_live_fixes_at_once_restart_docker_once() {
    let c = Container::boot("hl-sixteen", &setup());
    c.sh_ok(
        "for i in $(seq 1 16); do \
           (dropfix fix --yes --format json </dev/null >/run/df.$i.out 2>/run/df.$i.err; \
            echo $? >/run/df.$i.rc) >/dev/null 2>&1 & \
         done; wait",
    );
    let mut changed = 0;
    let mut waited = 0;
    for i in 1..=16 {
        let rc = c.sh_ok(&format!("cat /run/df.{i}.rc"));
        let out = c.sh_ok(&format!("cat /run/df.{i}.out"));
        let err = c.sh_ok(&format!("cat /run/df.{i}.err"));
        assert_eq!(rc.trim(), "0", "{out}{err}");
        if out.contains("\"changed\": true") {
            changed += 1;
        }
        for line in err.lines() {
            assert!(
                line.contains("is working on this root; waiting for it to finish"),
                "{line}"
            );
            waited += 1;
        }
    }
    assert_eq!(
        changed, 1,
        "exactly one process wrote, reloaded and restarted"
    );
    assert_eq!(starts(&c), 2, "docker restarted exactly once");
    assert!(waited >= 1, "at least one process waited for the lock");
    assert_eq!(show(&c, "MountFlags"), "");
    c.host_nsenter_net_ok(NETNS_PATH).expect("fixed");
}
