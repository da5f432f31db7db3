//! Live tests: the dropfix binary against a real systemd (PID 1 of a throwaway systemd-nspawn
//! container), run inside the container's namespaces as it would run on a host. These need root
//! and systemd-nspawn; they never skip: a container that cannot boot fails the test.

mod support;

use serde_json::Value;
use std::fs;
use std::path::Path;
use support::{Container, Setup, NETNS_PATH};

const DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";

fn setup() -> Setup {
    // DROPFIX_BIN (tests/run: the static release build) or the binary cargo built
    Setup::new().install_binary(support::dropfix_bin(), "/usr/local/bin/dropfix")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn dropfix(c: &Container, args: &str) -> Run {
    let out = c.sh(&format!("dropfix {args} </dev/null"));
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !r.stderr.contains("panicked"),
        "dropfix panicked: {}",
        r.stderr
    );
    r
}

fn starts(c: &Container) -> usize {
    fs::read_to_string(c.path("/run/fake-dockerd.starts"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn mount_flags(c: &Container) -> String {
    c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "MountFlags",
    )
}

/// Every file under a directory with its bytes and mode, for exact comparisons.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if m.is_dir() {
                out.push((rel + "/", Vec::new(), m.permissions().mode()));
                stack.push(p);
            } else if m.file_type().is_symlink() {
                out.push((
                    rel,
                    fs::read_link(&p)
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                    0,
                ));
            } else {
                out.push((rel, fs::read(&p).unwrap(), m.permissions().mode()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn before_the_fix_the_netns_cannot_be_entered_from_the_host() {
    let c = Container::boot("live-before", &setup());
    assert_eq!(mount_flags(&c), "524288");
    let err = c
        .host_nsenter_net_ok(NETNS_PATH)
        .expect_err("netns should not be enterable");
    assert!(err.contains("Invalid argument"), "{err}");
    // The same from inside PID 1's mount namespace.
    let out = c.sh(&format!("nsenter --net={NETNS_PATH} true"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid argument"));
}

#[test]
fn fix_yes_unsets_mountflags_restarts_once_and_the_netns_can_be_entered() {
    let c = Container::boot("live-fix", &setup());
    assert_eq!(starts(&c), 1);
    let r = dropfix(&c, "fix --yes --format json");
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["reloaded"], true);
    assert_eq!(j["restarted"], true);
    assert_eq!(j["rolled_back"], false);
    let u = &j["units"][0];
    assert_eq!(u["unit"], "docker.service");
    assert_eq!(u["strategy"], "drop-in");
    assert_eq!(u["systemd_version"], 252);
    assert_eq!(u["job_result"], "done");
    assert_eq!(u["verify"]["ok"], true, "{}", u["verify"]);
    assert!(c.path(DROPIN).exists());
    assert_eq!(mount_flags(&c), "0");
    let dropins = c.property(
        "docker.service",
        "org.freedesktop.systemd1.Unit",
        "DropInPaths",
    );
    assert!(dropins.contains("zz-dropfix-mountflags.conf"), "{dropins}");
    assert_eq!(starts(&c), 2, "docker restarted exactly once");
    c.host_nsenter_net_ok(NETNS_PATH)
        .expect("netns enterable after the fix");
    // ip netns sees docker's namespaces when /run/netns links to docker's directory.
    c.sh_ok("ln -s /run/docker/netns /run/netns && ip netns exec fake0 true");
}

#[test]
fn second_fix_changes_nothing_and_does_not_restart() {
    let c = Container::boot("live-idem", &setup());
    assert_eq!(dropfix(&c, "fix --yes").code, 0);
    let before = tree(&c.path("/etc/systemd/system"));
    let mtime = fs::metadata(c.path(DROPIN)).unwrap().modified().unwrap();
    let r = dropfix(&c, "fix --yes --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["changed"], false);
    assert_eq!(j["restarted"], false);
    assert_eq!(j["units"][0]["verify"]["ok"], true);
    assert_eq!(starts(&c), 2);
    assert_eq!(tree(&c.path("/etc/systemd/system")), before);
    assert_eq!(
        fs::metadata(c.path(DROPIN)).unwrap().modified().unwrap(),
        mtime
    );
    let text = dropfix(&c, "fix --yes");
    assert!(text.stdout.contains("nothing to do"), "{}", text.stdout);
}

#[test]
fn revert_yes_restores_the_exact_files_and_the_failure_comes_back() {
    let c = Container::boot("live-revert", &setup());
    let etc_before = tree(&c.path("/etc/systemd/system"));
    assert!(!c.path("/var/lib/dropfix").exists());
    assert_eq!(dropfix(&c, "fix --yes").code, 0);
    c.host_nsenter_net_ok(NETNS_PATH).expect("fixed");
    let r = dropfix(&c, "revert --yes --format json");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["reloaded"], true);
    assert_eq!(j["restarted"][0], "docker.service");
    assert_eq!(tree(&c.path("/etc/systemd/system")), etc_before);
    assert!(!c.path("/var/lib/dropfix").exists());
    assert_eq!(mount_flags(&c), "524288");
    assert_eq!(starts(&c), 3);
    let err = c.host_nsenter_net_ok(NETNS_PATH).expect_err("bug is back");
    assert!(err.contains("Invalid argument"), "{err}");
}

#[test]
fn daemon_that_fails_once_fixed_is_rolled_back_and_active_again() {
    let c = Container::boot("live-rollback", &setup().fail_in_host_ns());
    let etc_before = tree(&c.path("/etc/systemd/system"));
    let r = dropfix(&c, "fix --yes");
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    let msg = r.stderr.trim();
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    assert!(msg.contains("did not come back"), "{msg}");
    assert!(msg.contains("restored the previous files"), "{msg}");
    assert!(msg.contains("active again"), "{msg}");
    assert!(r.stdout.contains("rolled back"), "{}", r.stdout);
    assert_eq!(
        c.property(
            "docker.service",
            "org.freedesktop.systemd1.Unit",
            "ActiveState"
        ),
        "active"
    );
    assert_eq!(mount_flags(&c), "524288");
    assert_eq!(tree(&c.path("/etc/systemd/system")), etc_before);
    // The same for machines: one JSON object that says it was rolled back.
    let r = dropfix(&c, "fix --yes --format json");
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["rolled_back"], true);
    assert_eq!(j["units"][0]["job_result"], "failed");
    assert_eq!(
        c.property(
            "docker.service",
            "org.freedesktop.systemd1.Unit",
            "ActiveState"
        ),
        "active"
    );
    assert_eq!(tree(&c.path("/etc/systemd/system")), etc_before);
    assert!(!c.path("/var/lib/dropfix").exists(), "no state left behind");
}

/// The tree dropfix may write to inside the container: /etc/systemd and its own state.
fn etc_and_state(c: &Container) -> Vec<(String, Vec<u8>, u32)> {
    let mut t = tree(&c.path("/etc/systemd"));
    t.extend(tree(&c.path("/var/lib/dropfix")));
    t
}

fn doctor_ids(c: &Container) -> (i32, Value) {
    let r = dropfix(c, "doctor --format json");
    (r.code, r.json())
}

fn problem_commands(d: &Value) -> Vec<String> {
    d["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fix_without_consent_writes_nothing_and_a_deferred_restart_is_done_by_the_next_yes() {
    let c = Container::boot("live-consent", &setup());
    let before = etc_and_state(&c);
    // No terminal, neither --yes nor --no-restart: refused before anything is written.
    let r = dropfix(&c, "fix");
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("--yes") && r.stderr.contains("--no-restart"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing written"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(r.stdout, "", "text mode: the one error line only");
    assert_eq!(etc_and_state(&c), before, "/etc byte-identical");
    assert_eq!(starts(&c), 1, "no restart without consent");
    assert_eq!(mount_flags(&c), "524288", "no reload either");
    // The same in JSON: one object with the error.
    let r = dropfix(&c, "fix --format json");
    assert_eq!(r.code, 1);
    let j = r.json();
    assert_eq!(j["schema"], 2);
    assert!(j["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nothing written"));
    assert_eq!(j["changed"], false);
    assert_eq!(etc_and_state(&c), before);

    // --no-restart: written and reloaded, the restart deferred, exit 0, and said.
    let r = dropfix(&c, "fix --no-restart --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["reloaded"], true);
    assert_eq!(j["restarted"], false);
    assert!(
        j["pending"][0]
            .as_str()
            .unwrap()
            .contains("restart docker.service"),
        "{j}"
    );
    assert_eq!(starts(&c), 1);
    assert_eq!(mount_flags(&c), "0");
    assert!(c.host_nsenter_net_ok(NETNS_PATH).is_err());
    // doctor finds the deferred restart from the live host, and names the command that does it.
    let (code, d) = doctor_ids(&c);
    assert_eq!(code, 3, "{d}");
    assert!(
        problem_commands(&d).contains(&"dropfix fix --yes".to_string()),
        "{d}"
    );
    // A second run without consent still refuses (it would restart), and writes nothing.
    let written = etc_and_state(&c);
    let r = dropfix(&c, "fix");
    assert_eq!(r.code, 1);
    assert!(
        !r.stderr.contains("override written"),
        "no claim of a write: {}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing written"), "{}", r.stderr);
    assert_eq!(etc_and_state(&c), written);
    // --yes finishes the job: no write, no reload, one restart.
    let r = dropfix(&c, "fix --yes --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["restarted"], true);
    assert_eq!(j["reloaded"], false);
    assert_eq!(j["units"][0]["files"].as_array().unwrap().len(), 0);
    assert_eq!(etc_and_state(&c), written);
    assert_eq!(starts(&c), 2);
    c.host_nsenter_net_ok(NETNS_PATH).expect("fixed");
    let (code, d) = doctor_ids(&c);
    assert_eq!(code, 0, "doctor healthy after the deferred restart: {d}");
}

#[test]
fn revert_without_consent_restores_nothing_and_a_deferred_revert_restart_is_not_lost() {
    let c = Container::boot("live-revert-consent", &setup());
    let pristine = etc_and_state(&c);
    assert_eq!(dropfix(&c, "fix --yes").code, 0);
    assert_eq!(starts(&c), 2);
    let fixed = etc_and_state(&c);
    // No terminal, no flag: nothing restored, nothing restarted.
    let r = dropfix(&c, "revert");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("--yes") && r.stderr.contains("--no-restart"),
        "{}",
        r.stderr
    );
    assert_eq!(etc_and_state(&c), fixed);
    assert_eq!(starts(&c), 2);
    // --no-restart: files back and reloaded; docker keeps running in PID 1's namespace.
    let r = dropfix(&c, "revert --no-restart --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["reloaded"], true);
    assert_eq!(etc_and_state(&c), pristine);
    assert_eq!(mount_flags(&c), "524288");
    assert_eq!(starts(&c), 2);
    let pid = c.main_pid("docker.service");
    assert!(c.in_pid1_mount_ns(pid));
    // dropfix's state is gone, but the restart is not lost: revert --yes finds it on the host.
    let r = dropfix(&c, "revert --yes --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["restarted"][0], "docker.service", "{j}");
    assert_eq!(starts(&c), 3);
    let pid = c.main_pid("docker.service");
    assert!(
        !c.in_pid1_mount_ns(pid),
        "the restored MountFlags=slave is in force"
    );
    assert_eq!(etc_and_state(&c), pristine);
    // Nothing left: a third revert does nothing.
    let r = dropfix(&c, "revert --yes --format json");
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["changed"], false);
    assert_eq!(starts(&c), 3);
}

#[test]
fn set_restart_without_yes_and_without_a_tty_writes_nothing() {
    let c = Container::boot("live-set-consent", &setup());
    let before = etc_and_state(&c);
    let r = dropfix(&c, "set docker Service.LimitNOFILE=4096 --restart");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    assert_eq!(etc_and_state(&c), before);
    assert_eq!(starts(&c), 1);
    // Without --restart: written and reloaded, the restart left for later and said so.
    let r = dropfix(&c, "set docker Service.LimitNOFILE=4096 --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json()["pending"][0].as_str().unwrap().contains("restart"));
    assert_eq!(starts(&c), 1);
    // With --restart --yes: the unit started before the change, so it is restarted now.
    let r = dropfix(
        &c,
        "set docker Service.LimitNOFILE=4096 --restart --yes --format json",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["restarted"], true);
    assert_eq!(starts(&c), 2);
    let pid = c.main_pid("docker.service");
    let limits = c.sh_ok(&format!("cat /proc/{pid}/limits"));
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains("4096")),
        "{limits}"
    );
}

#[test]
fn every_error_is_one_json_object_with_schema() {
    let c = Container::boot("live-json-errors", &setup());
    for args in [
        "fix nosuch.service --format json",
        "fix bad/name --format json",
        "revert 'no such' --format json",
        "doctor nosuch.service --format json",
        "show nosuch.service --format json",
        "set docker Service.NoSuchKey=1 --format json",
        "fix --format json --no-such-flag",
        "fix --format json --timeout 0",
    ] {
        let r = dropfix(&c, args);
        assert_ne!(r.code, 0, "{args}");
        let j: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args}: not one JSON object ({e}): {:?}", r.stdout));
        assert_eq!(j["schema"], 2, "{args}: {j}");
        let msg = j["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{args}: {j}"));
        assert!(!msg.is_empty(), "{args}");
        assert!(
            r.stderr.starts_with("dropfix: error: ") || r.stderr.starts_with("error: "),
            "{args}: the error on stderr too: {}",
            r.stderr
        );
    }
    let j = dropfix(&c, "fix nosuch.service --format json").json();
    assert_eq!(j["error"]["unit"], "nosuch.service", "{j}");
    // Successful runs carry schema too, and error null.
    let j = dropfix(&c, "fix --dry-run --format json").json();
    assert_eq!(j["schema"], 2);
    assert!(j["error"].is_null());
    let j = dropfix(&c, "doctor --format json").json();
    assert_eq!(j["schema"], 2);
}

#[test]
fn private_tmp_is_warned_before_writing_and_verification_reports_it() {
    let unit =
        support::DOCKER_SERVICE.replace("MountFlags=slave", "MountFlags=slave\nPrivateTmp=yes");
    let c = Container::boot("live-privtmp", &setup().docker_service(&unit));
    let r = dropfix(&c, "fix --dry-run");
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("warning: PrivateTmp=yes"), "{}", r.stdout);
    assert!(!c.path(DROPIN).exists());
    // The fix is in force, but PrivateTmp= keeps the namespace apart: the netns stays
    // unreachable, and the exit status says so (4), without undoing the fix.
    let r = dropfix(&c, "fix --yes --format json");
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["rolled_back"], false);
    assert_eq!(j["unreachable"][0]["class"], "held", "{j}");
    let u = &j["units"][0];
    assert!(u["warnings"][0]
        .as_str()
        .unwrap()
        .contains("PrivateTmp=yes"));
    assert_eq!(u["verify"]["ok"], false);
    let checks = u["verify"]["checks"].as_array().unwrap();
    let ns = checks
        .iter()
        .find(|c| c["check"].as_str().unwrap().contains("mount namespace"))
        .unwrap();
    assert_eq!(ns["ok"], false);
    assert!(
        ns["evidence"].as_str().unwrap().contains("PrivateTmp"),
        "{ns}"
    );
    assert_eq!(mount_flags(&c), "0");
    assert!(c.host_nsenter_net_ok(NETNS_PATH).is_err());
}

#[test]
fn full_copy_for_systemd_229_to_232_also_unsets_mountflags_here() {
    let c = Container::boot("live-fullcopy", &setup());
    let r = dropfix(&c, "fix --yes --strategy full-copy --format json");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["units"][0]["strategy"], "full-copy");
    let copy = fs::read_to_string(c.path("/etc/systemd/system/docker.service")).unwrap();
    assert!(copy.contains("#MountFlags=slave"));
    assert!(!c.path(DROPIN).exists());
    assert_eq!(mount_flags(&c), "0");
    let frag = c.property(
        "docker.service",
        "org.freedesktop.systemd1.Unit",
        "FragmentPath",
    );
    assert_eq!(frag, "/etc/systemd/system/docker.service");
    c.host_nsenter_net_ok(NETNS_PATH)
        .expect("netns enterable with the full copy");
    // Planned as for systemd 231 it is the same full copy.
    let r = dropfix(&c, "revert --yes");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = dropfix(&c, "fix --systemd-version 231 --yes --format json");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["units"][0]["strategy"], "full-copy");
    c.host_nsenter_net_ok(NETNS_PATH).expect("netns enterable");
}

#[test]
fn a_socket_unit_is_fixed_through_its_own_interface_and_a_target_is_refused_up_front() {
    let socket = "[Socket]\nListenStream=/run/dropfix-test.sock\nMountFlags=slave\n";
    let service = "[Service]\nExecStart=/bin/true\n";
    let c = Container::boot(
        "live-socket",
        &setup()
            .unit("dftest.socket", socket)
            .unit("dftest.service", service),
    );
    let prop = |c: &Container| {
        c.property(
            "dftest.socket",
            "org.freedesktop.systemd1.Socket",
            "MountFlags",
        )
    };
    assert_eq!(prop(&c), "524288");
    let r = dropfix(&c, "fix dftest.socket --yes --format json");
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let j = r.json();
    assert_eq!(j["units"][0]["mount_flags_before"], "slave", "{j}");
    assert_eq!(j["units"][0]["verify"]["checks"][0]["ok"], true, "{j}");
    assert!(!j.to_string().contains("MountFlags=?"), "{j}");
    assert_eq!(prop(&c), "0");
    // A type without MountFlags: one clear line, nothing written.
    let r = dropfix(&c, "fix multi-user.target");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("a .target unit has no MountFlags="),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}
