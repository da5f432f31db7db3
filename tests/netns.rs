//! Live tests for network namespaces the host cannot enter, whatever made them: a service's
//! PrivateMounts= (neutron's qrouter), a service's MountFlags= (a CNI plugin's daemon), and a
//! process in a private mount namespace no unit setting made (a container, `unshare`). Each
//! runs against a real systemd in a throwaway container (see tests/support).

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::{Container, Setup};

fn setup() -> Setup {
    Setup::new().install_binary(support::dropfix_bin(), "/usr/local/bin/dropfix")
}

fn dropfix(c: &Container, args: &str) -> (i32, String, String) {
    let out = c.sh(&format!("dropfix {args} </dev/null"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn json(s: &str) -> Value {
    let v: Value = serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"));
    assert_eq!(v["schema"], 2, "{s}");
    v
}

/// Waits until `cmd` succeeds in the container (PID 1's namespaces).
fn wait_for(c: &Container, cmd: &str) {
    let start = Instant::now();
    while !c.sh(cmd).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "`{cmd}` never succeeded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The unit file systemd loaded for `unit`.
fn fragment_path(c: &Container, unit: &str) -> String {
    c.sh_ok(&format!("systemctl show -p FragmentPath --value {unit}"))
        .trim()
        .to_string()
}

/// The `netns` finding of `doctor --format json` for the entry at `path`.
fn netns_finding(c: &Container, path: &str) -> Value {
    let (code, out, err) = dropfix(c, "doctor --format json");
    assert_eq!(code, 3, "{out}\n{err}");
    json(&out)["host"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "netns" && f["netns"]["path"] == path)
        .cloned()
        .unwrap_or_else(|| panic!("no finding for {path}: {out}"))
}

const QROUTER: &str = "[Unit]\nDescription=neutron's l3 agent, in short\n[Service]\nType=simple\nPrivateMounts=yes\nExecStart=/bin/sh -c 'ip netns delete qrouter-test 2>/dev/null; ip netns add qrouter-test && exec sleep infinity'\n";

#[test]
fn private_mounts_service_is_named_with_file_and_line_and_set_makes_its_netns_enterable() {
    let c = Container::boot("netns-qrouter", &setup().unit("qrouter.service", QROUTER));
    c.sh_ok("systemctl start qrouter.service");
    wait_for(&c, "test -e /run/netns/qrouter-test");
    assert!(!c.sh("ip netns exec qrouter-test true").status.success());
    let f = netns_finding(&c, "/run/netns/qrouter-test");
    assert_eq!(f["status"], "problem");
    assert_eq!(f["netns"]["class"], "held");
    assert_eq!(f["netns"]["holders"][0]["unit"], "qrouter.service");
    let cause = &f["cause"];
    assert_eq!(cause["kind"], "unit-setting", "{f}");
    assert_eq!(cause["unit"], "qrouter.service");
    assert_eq!(cause["setting"], "PrivateMounts");
    let fragment = fragment_path(&c, "qrouter.service");
    assert_eq!(cause["path"], fragment.as_str());
    assert_eq!(cause["line"], 5);
    assert_eq!(
        f["command"],
        "dropfix set qrouter.service Service.PrivateMounts=no --restart"
    );
    let fix = f["fix"].as_str().unwrap();
    assert!(fix.contains("PrivateMounts=yes protected"), "{fix}");
    let summary = f["summary"].as_str().unwrap();
    assert!(
        summary.contains("qrouter.service")
            && summary.contains(&format!("PrivateMounts=yes ({fragment}:5)")),
        "{summary}"
    );
    // The text names the same.
    let (_, text, _) = dropfix(&c, "doctor");
    assert!(
        text.contains("fix: dropfix set qrouter.service Service.PrivateMounts=no --restart"),
        "{text}"
    );

    let (code, out, err) = dropfix(
        &c,
        "set qrouter.service Service.PrivateMounts=no --restart --yes",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    wait_for(&c, "ip netns exec qrouter-test true");
    let (code, out, err) = dropfix(&c, "doctor --netns /run/netns/qrouter-test");
    assert_eq!(code, 0, "{out}\n{err}");
}

const CNI: &str = "[Service]\nType=simple\nMountFlags=slave\nExecStart=/bin/sh -c 'ip netns delete cni-0f1e2d 2>/dev/null; ip netns add cni-0f1e2d && exec sleep infinity'\n";

#[test]
fn mountflags_service_is_fixed_by_dropfix_fix_unit() {
    let c = Container::boot("netns-cni", &setup().unit("cni.service", CNI));
    c.sh_ok("systemctl start cni.service");
    wait_for(&c, "test -e /var/run/netns/cni-0f1e2d");
    let f = netns_finding(&c, "/run/netns/cni-0f1e2d");
    assert_eq!(f["status"], "problem");
    assert_eq!(f["cause"]["kind"], "unit-setting", "{f}");
    assert_eq!(f["cause"]["setting"], "MountFlags");
    assert_eq!(
        f["cause"]["path"],
        fragment_path(&c, "cni.service").as_str()
    );
    assert_eq!(f["cause"]["line"], 3);
    assert_eq!(f["command"], "dropfix fix cni.service");
    // The same path through the /var/run link gets the same answer.
    let (code, out, _) = dropfix(&c, "doctor --netns /var/run/netns/cni-0f1e2d --format json");
    assert_eq!(code, 3, "{out}");
    assert_eq!(json(&out)["host"][0]["command"], "dropfix fix cni.service");

    let (code, out, err) = dropfix(&c, "fix cni.service --yes");
    assert_eq!(code, 0, "{out}\n{err}");
    wait_for(&c, "ip netns exec cni-0f1e2d true");
    let (code, out, err) = dropfix(&c, "doctor --netns /var/run/netns/cni-0f1e2d");
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn a_private_unshare_namespace_is_named_with_its_propagation_and_no_unit_change() {
    let c = Container::boot("netns-unshare", &setup());
    // A transient unit with no namespacing setting of its own: the namespace is unshare's.
    c.sh_ok("systemd-run --unit=ctr-x unshare --mount --propagation private sh -c 'ip netns add ctr-x && exec sleep infinity'");
    wait_for(&c, "test -e /run/netns/ctr-x");
    // ip netns add in a private mount namespace leaves a plain file the host sees.
    assert!(!c.sh("ip netns exec ctr-x true").status.success());
    let f = netns_finding(&c, "/run/netns/ctr-x");
    assert_eq!(f["status"], "problem");
    assert_eq!(f["netns"]["holders"][0]["command"], "sleep", "{f}");
    assert_eq!(f["cause"]["kind"], "container", "{f}");
    assert_eq!(f["cause"]["propagation"], "private");
    assert_eq!(f["cause"]["setting"], Value::Null);
    assert_eq!(f["command"], Value::Null, "no unit change proposed: {f}");
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix.contains("rshared") && fix.contains("private propagation"),
        "{fix}"
    );
    let pid = f["netns"]["holders"][0]["pid"].as_u64().unwrap();
    assert!(fix.contains(&format!("pid {pid} ")), "{fix}");
    let (code, out, _) = dropfix(&c, "doctor --format json");
    assert_eq!(code, 3);
    let cmds = json(&out)["commands"].to_string();
    assert!(!cmds.contains("ctr-x"), "{cmds}");
}

#[test]
fn doctor_netns_answers_for_an_enterable_a_stale_a_missing_and_a_non_namespace_path() {
    let c = Container::boot("netns-explain", &setup());
    c.sh_ok("ip netns add blue && touch /run/netns/gone");

    let (code, out, err) = dropfix(&c, "doctor --netns /run/netns/blue");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("/run/netns/blue can be entered from the host"),
        "{out}"
    );

    let (code, out, _) = dropfix(&c, "doctor --netns /run/netns/gone --format json");
    assert_eq!(code, 3, "{out}");
    let v = json(&out);
    assert_eq!(v["healthy"], false);
    assert_eq!(v["host"][0]["status"], "problem");
    assert_eq!(v["host"][0]["netns"]["class"], "stale");
    assert!(v["host"][0]["summary"]
        .as_str()
        .unwrap()
        .contains("cannot be entered"));

    for (path, says) in [
        ("/etc/passwd", "is not a network-namespace file"),
        ("/run/netns", "is not a network-namespace file"),
        ("/run/netns/nope", "does not exist"),
    ] {
        let (code, out, err) = dropfix(&c, &format!("doctor --netns {path} --format json"));
        assert_eq!(code, 1, "{path}: {out}\n{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        let v = json(&out);
        assert_eq!(v["host"][0]["status"], "unchecked");
        let summary = v["host"][0]["summary"].as_str().unwrap();
        assert!(summary.starts_with(&format!("{path} {says}")), "{summary}");
    }
    // Several paths at once: each answered, the worst exit status.
    let (code, out, _) = dropfix(&c, "doctor --netns /run/netns/blue /run/netns/gone");
    assert_eq!(code, 3);
    assert!(
        out.contains("blue can be entered") && out.contains("gone cannot be entered"),
        "{out}"
    );
}
