//! Live tests for `doctor`, `scan` and `fix --link-ip-netns` against a real systemd in a
//! throwaway container (see tests/support). Never skipped: a container that cannot boot fails.

mod support;

use serde_json::Value;
use support::{Container, Setup, NETNS_PATH};

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
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn findings(v: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = v["host"].as_array().cloned().unwrap_or_default();
    for u in v["units"].as_array().unwrap() {
        out.extend(u["findings"].as_array().unwrap().iter().cloned());
    }
    out
}

#[test]
fn doctor_on_a_broken_host_names_mountflags_the_plain_netns_file_and_its_holder() {
    let c = Container::boot("doc-broken", &setup());
    let (code, out, err) = dropfix(&c, "doctor --format json");
    assert_eq!(code, 3, "{out}\n{err}");
    let v = json(&out);
    assert_eq!(v["healthy"], false);
    let f = findings(&v);
    let mf = f.iter().find(|x| x["id"] == "mount-flags").unwrap();
    assert_eq!(mf["status"], "problem");
    assert!(mf["summary"].as_str().unwrap().contains("MountFlags=slave"));
    assert_eq!(mf["fix"], "dropfix fix");
    let netns = f.iter().find(|x| x["id"] == "netns").unwrap();
    assert_eq!(netns["status"], "problem");
    assert!(netns["summary"].as_str().unwrap().contains(NETNS_PATH));
    let ev = netns["evidence"].to_string();
    assert!(ev.contains("plain file"), "{ev}");
    let main_pid = c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "MainPID",
    );
    assert!(ev.contains("docker.service"), "{ev}");
    assert!(
        ev.contains(&format!("pid {main_pid} ")),
        "holder is dockerd's main process {main_pid}: {ev}"
    );
    // Text for people says the same, briefly.
    let (code, text, _) = dropfix(&c, "doctor");
    assert_eq!(code, 3);
    assert!(
        text.contains("PROBLEM")
            && text.contains("MountFlags=slave")
            && text.contains("fix: dropfix fix"),
        "{text}"
    );
}

#[test]
fn doctor_after_fix_is_healthy() {
    let c = Container::boot("doc-fixed", &setup());
    assert_eq!(dropfix(&c, "fix --yes").0, 0);
    let (code, out, err) = dropfix(&c, "doctor --format json");
    assert_eq!(code, 0, "{out}\n{err}");
    let v = json(&out);
    assert_eq!(v["healthy"], true);
    let netns = findings(&v)
        .into_iter()
        .find(|x| x["id"] == "netns")
        .unwrap();
    assert_eq!(netns["status"], "ok");
}

#[test]
fn doctor_lists_a_service_holding_docker_mounts_with_its_unit() {
    let leak = "[Service]\nExecStart=/bin/sleep infinity\nPrivateTmp=yes\nMountFlags=private\n";
    let follow = "[Service]\nExecStart=/bin/sleep infinity\nPrivateTmp=yes\n";
    let c = Container::boot(
        "doc-leak",
        &setup()
            .unit("leak.service", leak)
            .unit("follow.service", follow),
    );
    assert_eq!(dropfix(&c, "fix --yes").0, 0);
    // dockerd mounts something under /var/lib/docker; then two sandboxed services start.
    c.sh_ok(
        "mkdir -p /var/lib/docker/overlay2/x && mount -t tmpfs tmpfs /var/lib/docker/overlay2/x",
    );
    c.sh_ok("systemctl start leak.service follow.service");
    let (code, out, _) = dropfix(&c, "doctor --format json");
    assert_eq!(code, 3, "{out}");
    let f = findings(&json(&out));
    let of = |unit: &str| -> Value {
        f.iter()
            .find(|x| {
                x["id"] == "leaked-mounts" && x["summary"].as_str().unwrap().starts_with(unit)
            })
            .cloned()
            .unwrap_or_else(|| panic!("{unit} not listed: {f:?}"))
    };
    // A private copy never follows docker's unmounts: the EBUSY case. A slave copy does.
    assert_eq!(of("leak.service")["status"], "problem");
    assert_eq!(of("follow.service")["status"], "info");
    // docker removes the mount: the private copy stays behind in leak.service.
    c.sh_ok("umount /var/lib/docker/overlay2/x");
    let (code, out, _) = dropfix(&c, "doctor --format json");
    assert_eq!(code, 3, "{out}");
    let f = findings(&json(&out));
    let bad: Vec<&Value> = f
        .iter()
        .filter(|x| x["id"] == "leaked-mounts" && x["status"] == "problem")
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("leak.service holds"),
        "{}",
        bad[0]
    );
    assert!(bad[0]["evidence"]
        .to_string()
        .contains("(sleep, leak.service)"));
    // follow.service's copy of the overlay mount went away with the host's unmount.
    let follow = f
        .iter()
        .find(|x| {
            x["id"] == "leaked-mounts"
                && x["summary"].as_str().unwrap().starts_with("follow.service")
        })
        .unwrap();
    assert_eq!(follow["status"], "info");
    assert!(
        follow["evidence"]
            .to_string()
            .contains(": 1 mount(s), 0 stale"),
        "{follow}"
    );
}

#[test]
fn scan_lists_exactly_the_services_whose_process_is_in_another_mount_namespace() {
    let c = Container::boot("scan-live", &setup());
    let (code, out, err) = dropfix(&c, "scan --format json");
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let listed: Vec<String> = v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap().to_string())
        .collect();
    // Ground truth from the kernel for every running service: its main process's namespace.
    let truth = c.sh_ok(
        "p1=$(readlink /proc/1/ns/mnt); systemctl list-units --type=service --state=running --no-legend --plain | \
         while read -r u rest; do \
           pid=$(systemctl show -p MainPID --value $u); [ \"$pid\" -gt 0 ] || continue; \
           if [ \"$(readlink /proc/$pid/ns/mnt)\" != \"$p1\" ]; then echo \"own $u\"; else echo \"host $u\"; fi; done",
    );
    let mut checked = 0;
    for line in truth.lines() {
        let (kind, unit) = line.split_once(' ').unwrap();
        assert_eq!(
            kind == "own",
            listed.iter().any(|l| l == unit),
            "{unit}: kernel says {kind}, scan listed {listed:?}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "{truth}");
    assert!(listed.contains(&"docker.service".to_string()));
    let loaded = c.sh_ok(
        "systemctl list-units --type=service --all --no-legend --plain | grep -c ' loaded '",
    );
    assert_eq!(
        v["scanned"].as_u64().unwrap(),
        loaded.trim().parse::<u64>().unwrap()
    );
}

#[test]
fn link_ip_netns_makes_ip_netns_exec_work_and_revert_removes_it() {
    let c = Container::boot("ipnetns", &setup());
    let (code, out, err) = dropfix(&c, "fix --yes --link-ip-netns");
    assert_eq!(code, 0, "{out}\n{err}");
    c.sh_ok("ip netns exec fake0 true");
    assert!(c.sh_ok("ip netns list").contains("fake0"));
    assert_eq!(
        std::fs::read_link(c.path("/run/netns")).unwrap().to_str(),
        Some("/run/docker/netns")
    );
    let tmpfiles =
        std::fs::read_to_string(c.path("/etc/tmpfiles.d/dropfix-ip-netns.conf")).unwrap();
    assert!(tmpfiles.contains("L /run/netns - - - - /run/docker/netns"));
    let (code, out, _) = dropfix(&c, "doctor --format json");
    assert_eq!(code, 0);
    assert!(!findings(&json(&out)).iter().any(|x| x["id"] == "ip-netns"));
    let (code, _, err) = dropfix(&c, "revert --yes");
    assert_eq!(code, 0, "{err}");
    assert!(
        !c.path("/run/netns").exists() && std::fs::symlink_metadata(c.path("/run/netns")).is_err()
    );
    assert!(!c.path("/etc/tmpfiles.d/dropfix-ip-netns.conf").exists());
}

#[test]
fn link_ip_netns_leaves_a_busy_run_netns_alone() {
    let c = Container::boot("ipnetns-busy", &setup());
    c.sh_ok("ip netns add blue");
    let (code, _, err) = dropfix(&c, "fix --yes --link-ip-netns");
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/run/netns already holds namespaces (blue)"),
        "{err}"
    );
    assert!(c.path("/run/netns/blue").exists());
    assert!(std::fs::symlink_metadata(c.path("/run/netns"))
        .unwrap()
        .is_dir());
    // Nothing else was written either.
    assert!(!c.path("/etc/systemd/system/docker.service.d").exists());
}
