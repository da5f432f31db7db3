//! A fleet through Ansible: real ansible-core (PyPI, tests/harness/ansible-venv.sh) runs
//! packaging/ansible/site.yml with the no-Python dropfix module against three harness
//! containers at once, each with Debian's real dockerd (MountFlags=slave) and sshd listening on
//! its own loopback only. ssh reaches each through a ProxyCommand that enters that container's
//! network namespace; no address outside it exists. Needs root; never skips.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{dropfix_bin, Container, Setup};

const HOSTS: usize = 3;
const DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";
const UP: Duration = Duration::from_secs(60);

/// sshd: root by key only, on the container's loopback (its network namespace has only lo).
const SSHD_CONFIG: &str = "\
ListenAddress 127.0.0.1
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
# root's password field is '*' (no password, not locked); PAM would want a login session
UsePAM no
";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ansible_venv() -> PathBuf {
    let script = top().join("tests/harness/ansible-venv.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn proxy_command(c: &Container) -> String {
    format!(
        "nsenter --net=/proc/{}/ns/net socat - TCP:127.0.0.1:22",
        c.leader()
    )
}

fn ssh_opts(c: &Container, key: &Path) -> Vec<String> {
    [
        "-i",
        &key.display().to_string(),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        &format!("ProxyCommand={}", proxy_command(c)),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Closes Ansible's ssh masters (ControlPersist) before the containers stop.
struct Masters(PathBuf);

impl Drop for Masters {
    fn drop(&mut self) {
        let Ok(dir) = fs::read_dir(&self.0) else {
            return;
        };
        for e in dir.flatten() {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", e.path().display()))
                .args(["-O", "exit", "x"])
                .output();
        }
    }
}

struct Play {
    code: i32,
    out: String,
    took: Duration,
}

/// `ansible-playbook -i <inventory> packaging/ansible/site.yml ARGS`.
fn play(venv: &Path, work: &Path, args: &[&str]) -> Play {
    let t0 = Instant::now();
    let out = Command::new(venv.join("bin/ansible-playbook"))
        .arg("-i")
        .arg(work.join("inventory.ini"))
        .arg("-f")
        .arg(HOSTS.to_string())
        .arg(top().join("packaging/ansible/site.yml"))
        .args(args)
        .env(
            "ANSIBLE_CONFIG",
            top().join("packaging/ansible/ansible.cfg"),
        )
        .env("ANSIBLE_HOME", work.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", work.join("ansible-tmp"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", work.join("cp"))
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "False")
        .output()
        .expect("running ansible-playbook");
    let p = Play {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: t0.elapsed(),
    };
    eprintln!(
        "---- ansible-playbook site.yml {} -> {} in {:.1?}\n{}",
        args.join(" "),
        p.code,
        p.took,
        p.out
    );
    p
}

/// PLAY RECAP counters per host: "name : ok=2 changed=1 unreachable=0 failed=0 ...".
fn recap(out: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut hosts = BTreeMap::new();
    let Some((_, tail)) = out.split_once("PLAY RECAP") else {
        return hosts;
    };
    for line in tail.lines() {
        let Some((host, counts)) = line.split_once(" : ") else {
            continue;
        };
        let counts = counts
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        hosts.insert(host.trim().to_string(), counts);
    }
    hosts
}

fn assert_recap(p: &Play, fleet: &[Container], changed: u32) {
    assert_eq!(p.code, 0, "ansible-playbook failed:\n{}", p.out);
    let r = recap(&p.out);
    assert_eq!(r.len(), fleet.len(), "one recap line a host:\n{}", p.out);
    for c in fleet {
        let h = r
            .get(c.name())
            .unwrap_or_else(|| panic!("{} not in the recap:\n{}", c.name(), p.out));
        assert_eq!(h.get("changed"), Some(&changed), "{}: {h:?}", c.name());
        assert_eq!(h.get("failed"), Some(&0), "{}: {h:?}", c.name());
        assert_eq!(h.get("unreachable"), Some(&0), "{}: {h:?}", c.name());
    }
}

fn mount_flags(c: &Container) -> String {
    c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "MountFlags",
    )
}

#[test]
fn ansible_check_diff_then_fix_then_nothing_on_three_hosts_without_python() {
    let venv = ansible_venv();
    let work = tempfile::Builder::new()
        .prefix("dropfix-ansible-")
        .tempdir()
        .expect("tempdir");
    let work = work.path();
    let key = work.join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "dropfix-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let pubkey = fs::read_to_string(key.with_extension("pub")).expect("public key");

    let setup = Setup::real_docker()
        .install_binary(dropfix_bin(), "/usr/local/bin/dropfix")
        .etc_file("/etc/ssh/sshd_config.d/dropfix-test.conf", SSHD_CONFIG)
        .etc_file("/etc/ssh/authorized_keys/root", &pubkey);
    let t0 = Instant::now();
    let fleet: Vec<Container> = std::thread::scope(|s| {
        let boots: Vec<_> = (0..HOSTS)
            .map(|i| {
                let setup = &setup;
                s.spawn(move || Container::boot(&format!("fleet{i}"), setup))
            })
            .collect();
        boots.into_iter().map(|b| b.join().expect("boot")).collect()
    });
    for c in &fleet {
        c.wait_active_state("docker.service", &["active"], UP);
        c.wait_active_state("ssh.service", &["active"], UP);
        assert_eq!(mount_flags(c), "524288");
        // No Python on the targets: the module must not need one.
        let py = c.sh("command -v python3 python3.11 python");
        assert!(
            !py.status.success(),
            "python on {}: {}",
            c.name(),
            String::from_utf8_lossy(&py.stdout)
        );
        // sshd answers on the container's loopback, through its namespace only.
        let login = Instant::now();
        loop {
            let ok = Command::new("ssh")
                .args(ssh_opts(c, &key))
                .arg(format!("root@{}", c.name()))
                .arg("cat /etc/machine-id")
                .output()
                .expect("ssh");
            if ok.status.success() {
                let id = String::from_utf8_lossy(&ok.stdout).trim().to_string();
                let want = fs::read_to_string(c.path("/etc/machine-id")).unwrap_or_default();
                assert_eq!(id, want.trim(), "{} reached the wrong container", c.name());
                break;
            }
            assert!(
                login.elapsed() < UP,
                "ssh to {}: {}",
                c.name(),
                String::from_utf8_lossy(&ok.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "{HOSTS} hosts up with dockerd and sshd in {:.1?}",
        t0.elapsed()
    );

    // No ansible_host: each host's name goes to ssh unresolved (the ProxyCommand decides where
    // the bytes go), and each gets its own ssh master.
    let mut inv = String::from("[docker_hosts]\n");
    for c in &fleet {
        inv.push_str(&format!(
            "{} ansible_ssh_common_args='-o ProxyCommand=\"{}\" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n",
            c.name(),
            proxy_command(c)
        ));
    }
    inv.push_str(&format!(
        "\n[docker_hosts:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_python_interpreter=/nonexistent/python\n",
        key.display()
    ));
    fs::write(work.join("inventory.ini"), inv).expect("inventory");
    fs::create_dir_all(work.join("cp")).expect("control path dir");
    let _masters = Masters(work.join("cp"));

    let pids: Vec<u32> = fleet.iter().map(|c| c.main_pid("docker.service")).collect();

    // 1. --check --diff: every host would change, shows the override, and nothing changes.
    let p = play(&venv, work, &["--check", "--diff"]);
    assert_recap(&p, &fleet, 1);
    // Ansible renders the module's before/after texts as a unified diff of its own.
    let header = format!("+++ after: {DROPIN}");
    assert_eq!(
        p.out.matches(&header).count(),
        HOSTS,
        "the diff of the drop-in, once a host:\n{}",
        p.out
    );
    assert!(p.out.contains("+MountFlags=\n"), "{}", p.out);
    for (c, pid) in fleet.iter().zip(&pids) {
        assert!(
            !c.path(DROPIN).exists(),
            "{}: written in check mode",
            c.name()
        );
        assert!(!c.path("/var/lib/dropfix").exists(), "{}", c.name());
        assert_eq!(mount_flags(c), "524288", "{}", c.name());
        assert_eq!(
            c.main_pid("docker.service"),
            *pid,
            "{}: restarted",
            c.name()
        );
    }

    // 2. The real run fixes every host: files, reload, one restart, dockerd in PID 1's namespace.
    let p = play(&venv, work, &["--diff"]);
    assert_recap(&p, &fleet, 1);
    let mut after = Vec::new();
    for (c, pid) in fleet.iter().zip(&pids) {
        assert!(c.path(DROPIN).exists(), "{}", c.name());
        assert_eq!(mount_flags(c), "0", "{}", c.name());
        let now = c.main_pid("docker.service");
        assert_ne!(now, *pid, "{}: docker restarted", c.name());
        assert!(
            c.in_pid1_mount_ns(now),
            "{}: dockerd in PID 1's ns",
            c.name()
        );
        assert!(
            p.out.contains(&format!(
                "{}: docker.service MountFlags slave -> (unset) (drop-in, restarted); changed=True restarted=True",
                c.name()
            )),
            "{}: the module returned dropfix's report:\n{}",
            c.name(),
            p.out
        );
        after.push(now);
    }

    // 3. Again: nothing to do anywhere, nothing restarted.
    let p = play(&venv, work, &[]);
    assert_recap(&p, &fleet, 0);
    for (c, pid) in fleet.iter().zip(&after) {
        assert_eq!(
            c.main_pid("docker.service"),
            *pid,
            "{}: restarted",
            c.name()
        );
        assert_eq!(mount_flags(c), "0");
    }
}

/// The module as Ansible runs it (`sh <module> <args file>`, JSON arguments), on one stand-in
/// host: `changed` follows file changes and restarts, not dropfix's own `changed`; arguments
/// dropfix does not know fail the task and change nothing.
#[test]
fn module_changed_means_files_changed_or_a_restart_happened() {
    const MODULE: &str = "/usr/local/lib/dropfix-test/dropfix";
    let module = fs::read(top().join("packaging/ansible/library/dropfix")).expect("module");
    let setup = Setup::new()
        .install_binary(dropfix_bin(), "/usr/local/bin/dropfix")
        .usr_bytes(MODULE, &module, 0o755);
    let c = Container::boot("ansible-module", &setup);
    let starts = || {
        fs::read_to_string(c.path("/run/fake-dockerd.starts"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let run = |args: &str| -> serde_json::Value {
        c.write_file("/run/module-args", args);
        let out = c.sh(&format!("sh {MODULE} /run/module-args"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "module output is not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            out.status.success(),
            v["failed"] == false,
            "exit status and `failed` agree: {v}"
        );
        v
    };

    // Check mode with diff: would change; the diff is the drop-in's text, before and after;
    // nothing written.
    let v = run(r#"{"_ansible_check_mode": true, "_ansible_diff": true}"#);
    assert_eq!(v["changed"], true, "{v}");
    assert_eq!(v["dropfix"]["dry_run"], true);
    assert_eq!(v["diff"][0]["after_header"], DROPIN, "{v}");
    assert_eq!(v["diff"][0]["before"], "", "{v}");
    let after = v["diff"][0]["after"].as_str().expect("after text");
    assert!(after.contains("\nMountFlags=\n"), "{after}");
    assert!(!c.path(DROPIN).exists());
    let checked = after.to_string();

    // restart: false writes and reloads; the restart stays pending and is not a change.
    let v = run(r#"{"restart": false}"#);
    assert_eq!(v["changed"], true, "files changed: {v}");
    assert_eq!(v["dropfix"]["restarted"], false);
    assert_eq!(starts(), 1);
    assert_eq!(
        fs::read_to_string(c.path(DROPIN)).expect("drop-in"),
        checked,
        "check mode showed what is written"
    );
    let v = run(r#"{"restart": "False", "_ansible_check_mode": false}"#);
    assert_eq!(
        v["changed"], false,
        "nothing written, nothing restarted: {v}"
    );
    assert_eq!(starts(), 1);
    // In check mode the pending restart is a change a real run would make.
    let v = run(r#"{"_ansible_check_mode": true}"#);
    assert_eq!(v["changed"], true, "a restart is due: {v}");
    // The real run makes it: no file changes, but a restart.
    let v = run(r#"{"restart": true}"#);
    assert_eq!(v["changed"], true, "restarted: {v}");
    assert_eq!(v["dropfix"]["restarted"], true);
    assert_eq!(v["dropfix"]["units"][0]["files"], serde_json::json!([]));
    assert_eq!(starts(), 2);
    let v = run("{}");
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(starts(), 2);

    // Reverted, then bad input fails with a message and no change.
    let v = run(r#"{"state": "reverted"}"#);
    assert_eq!(v["changed"], true, "{v}");
    assert!(!c.path(DROPIN).exists());
    let v = run(r#"{"units": ["docker.service; rm -rf /"]}"#);
    assert_eq!(v["failed"], true, "{v}");
    assert_eq!(v["changed"], false);
    let v = run(r#"{"units": ["nosuch"]}"#);
    assert_eq!(v["failed"], true, "{v}");
    assert!(v["msg"].as_str().unwrap_or("").contains("not found"), "{v}");
    // Misspelt options fail by name and restart nothing (the shell module once ran these).
    run(r#"{"restart": false}"#);
    let starts_now = starts();
    for args in [
        r#"{"stat": "reverted"}"#,
        r#"{"resart": false}"#,
        r#"{"restart": "maybe"}"#,
        r#"{"root": "/tmp/a\"b"}"#,
    ] {
        let v = run(args);
        assert_eq!(v["failed"], true, "{args}: {v}");
        assert!(c.path(DROPIN).exists(), "{args}: reverted");
    }
    assert_eq!(starts(), starts_now, "restarted");
}
