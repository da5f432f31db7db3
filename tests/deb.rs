//! The .deb's life cycle with dpkg in a booted Debian container (the cached rootfs, /usr
//! writable): install enables the boot unit and restarts nothing; reinstall keeps it enabled,
//! or disabled when the admin disabled it; remove keeps dropfix's overrides and state, so the
//! fix stays in force and a reinstall can still revert exactly; purge keeps them while they are
//! in force (and says so), and removes /var/lib/dropfix once reverted. And lintian finds no
//! error in it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::{Container, Setup};

const UNIT: &str = "dropfix-firstboot.service";
const DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";
const STATE: &str = "/var/lib/dropfix/state.json";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/dropfix-firstboot.service";

fn build_deb(out: &std::path::Path) -> PathBuf {
    let top = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(top.join("packaging/deb/build.sh"))
        .arg(support::dropfix_bin())
        .arg(out)
        .output()
        .expect("running packaging/deb/build.sh");
    assert!(
        o.status.success(),
        "build.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// lintian (Debian's package checker, which tests/run installs) reports no error.
#[test]
fn lintian_finds_no_error_in_the_deb() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .unwrap_or_else(|e| panic!("cannot run lintian (apt-get install lintian): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("lintian:\n{text}");
    assert!(out.status.success(), "lintian failed:\n{text}");
    assert!(!text.lines().any(|l| l.starts_with("E: ")), "{text}");
}

fn exists(c: &Container, path: &str) -> bool {
    c.sh(&format!("test -e {path} || test -L {path}"))
        .status
        .success()
}

fn is_enabled(c: &Container) -> String {
    let out = c.sh(&format!("systemctl is-enabled {UNIT}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn dpkg(c: &Container, args: &str) -> String {
    let out = c.sh(&format!("DEBIAN_FRONTEND=noninteractive dpkg {args} 2>&1"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "dpkg {args}:\n{text}");
    text
}

fn docker_starts(c: &Container) -> usize {
    std::fs::read_to_string(c.path("/run/fake-dockerd.starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn install_reinstall_remove_and_purge_keep_the_fix_and_the_admins_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path());
    let setup = Setup::new().rootfs(support::docker_rootfs()).writable_usr();
    let c = Container::boot("deb-lifecycle", &setup);
    std::fs::copy(&deb, c.path("/root/dropfix.deb")).expect("copying the .deb in");
    let starts = docker_starts(&c);
    assert!(starts >= 1);

    // Install: enabled for the next boot, nothing started, docker untouched.
    dpkg(&c, "-i /root/dropfix.deb");
    assert_eq!(is_enabled(&c), "enabled");
    assert_eq!(
        c.property(UNIT, "org.freedesktop.systemd1.Unit", "ActiveState"),
        "inactive"
    );
    assert_eq!(docker_starts(&c), starts, "installing restarted docker");
    assert_eq!(
        c.sh_ok("systemctl is-enabled dropfix-doctor.timer || true")
            .trim(),
        "disabled",
        "the metrics timer is shipped, not enabled"
    );

    c.sh_ok("dropfix fix --yes </dev/null");
    assert!(exists(&c, DROPIN) && exists(&c, STATE));

    // Reinstall: still enabled; a disabled unit stays disabled (debhelper's was-enabled).
    dpkg(&c, "-i /root/dropfix.deb");
    assert_eq!(is_enabled(&c), "enabled");
    c.sh_ok(&format!("systemctl disable {UNIT}"));
    dpkg(&c, "-i /root/dropfix.deb");
    assert_eq!(is_enabled(&c), "disabled", "the admin's choice is kept");
    c.sh_ok(&format!("systemctl enable {UNIT}"));

    // Remove: the binary goes; the overrides, the state and the unit's enablement stay (the
    // unit is masked meanwhile); docker keeps running fixed.
    dpkg(&c, "-r dropfix");
    assert!(!exists(&c, "/usr/bin/dropfix"));
    assert!(exists(&c, DROPIN), "remove keeps the override");
    assert!(exists(&c, STATE), "remove keeps the state revert needs");
    assert!(exists(&c, WANTS), "remove keeps the enablement");
    assert_eq!(
        c.property(
            "docker.service",
            "org.freedesktop.systemd1.Service",
            "MountFlags"
        ),
        "0",
        "the fix stays in force"
    );

    // Reinstall after remove: enabled again, and revert still knows what to restore.
    dpkg(&c, "-i /root/dropfix.deb");
    assert_eq!(is_enabled(&c), "enabled");
    let dry = c.sh_ok("dropfix revert --dry-run </dev/null");
    assert!(dry.contains("zz-dropfix-mountflags.conf"), "{dry}");

    // Purge while the fix is in force: overrides and state kept, and said so.
    let said = dpkg(&c, "-P dropfix");
    assert!(said.contains("dropfix revert"), "{said}");
    assert!(exists(&c, DROPIN) && exists(&c, STATE));
    assert!(!exists(&c, WANTS), "purge forgets the enablement");
    assert!(
        !exists(&c, "/etc/systemd/system/dropfix-firstboot.service"),
        "no mask left"
    );

    // Reverted first, purge leaves nothing of dropfix behind.
    dpkg(&c, "-i /root/dropfix.deb");
    c.sh_ok("dropfix revert --no-restart </dev/null");
    dpkg(&c, "-P dropfix");
    for p in [DROPIN, "/var/lib/dropfix", WANTS, "/usr/bin/dropfix"] {
        assert!(!exists(&c, p), "{p} left after revert and purge");
    }
    let left = c.sh_ok("ls /etc/systemd/system | grep -i dropfix || true");
    assert_eq!(left.trim(), "", "{left}");
}
