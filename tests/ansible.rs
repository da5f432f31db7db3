//! A fleet through Ansible: real ansible-core (PyPI, tests/harness/ansible-venv.sh) installs the
//! dropfix collection (packaging/ansible) offline and runs its playbook `dropfix.dropfix.fix`
//! against three harness containers, each with Debian's real dockerd (MountFlags=slave), sshd
//! listening on its own loopback only, and neither Python nor dropfix: the action plugin puts
//! the binary there. ssh reaches each through a ProxyCommand that enters that container's
//! network namespace; no address outside it exists. ansible-doc renders the module's
//! documentation. Needs root; never skips.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{dropfix_bin, Container, Setup};

const HOSTS: usize = 3;
const DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";
/// Where the action plugin installs dropfix on a target by default.
const INSTALLED: &str = "/opt/bin/dropfix";
const TASK: &str = "TASK [Remove MountFlags from docker.service]";
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

/// `ansible-galaxy collection install packaging/ansible` into `dir` (offline: a directory source).
fn install_collection(venv: &Path, dir: &Path) {
    let out = Command::new(venv.join("bin/ansible-galaxy"))
        .args(["collection", "install", "--force", "-p"])
        .arg(dir)
        .arg(top().join("packaging/ansible"))
        .env("ANSIBLE_HOME", dir.join("ansible-home"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("running ansible-galaxy");
    assert!(
        out.status.success(),
        "ansible-galaxy collection install failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ansible-doc ARGS` with the collection installed in `collections`.
fn ansible_doc(venv: &Path, collections: &Path, args: &[&str]) -> String {
    let out = Command::new(venv.join("bin/ansible-doc"))
        .args(args)
        .env("ANSIBLE_COLLECTIONS_PATH", collections)
        .env("ANSIBLE_HOME", collections.join("ansible-home"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .output()
        .expect("running ansible-doc");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ansible-doc {args:?} failed:\n{text}");
    text
}

struct Play {
    code: i32,
    out: String,
    took: Duration,
}

/// `ansible-playbook -i <inventory> dropfix.dropfix.fix ARGS`, the collection's playbook,
/// with the binary under test as the x86_64 one to deliver.
fn play(venv: &Path, work: &Path, args: &[&str]) -> Play {
    let t0 = Instant::now();
    let binaries = serde_json::json!({ "dropfix_binaries": { "x86_64": dropfix_bin() } });
    let out = Command::new(venv.join("bin/ansible-playbook"))
        .arg("-i")
        .arg(work.join("inventory.ini"))
        .arg("-f")
        .arg(HOSTS.to_string())
        .arg("dropfix.dropfix.fix")
        .arg("-e")
        .arg(binaries.to_string())
        .args(args)
        .env(
            "ANSIBLE_CONFIG",
            top().join("packaging/ansible/ansible.cfg"),
        )
        .env("ANSIBLE_COLLECTIONS_PATH", work.join("collections"))
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
        "---- ansible-playbook dropfix.dropfix.fix {} -> {} in {:.1?}\n{}",
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

fn sha256_on(c: &Container, path: &str) -> String {
    c.sh_ok(&format!("sha256sum < {path}"))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `ansible-doc` finds the module in the installed collection and renders its options,
/// examples and return values from the YAML beside the shell module.
#[test]
fn ansible_doc_renders_the_modules_options_examples_and_return_values() {
    let venv = ansible_venv();
    let dir = tempfile::Builder::new()
        .prefix("dropfix-ansible-doc-")
        .tempdir()
        .expect("tempdir");
    install_collection(&venv, dir.path());
    let text = ansible_doc(&venv, dir.path(), &["dropfix.dropfix.dropfix"]);
    eprintln!("{text}");
    assert!(
        text.starts_with("> MODULE dropfix.dropfix.dropfix ("),
        "{text}"
    );
    assert!(text.contains("plugins/modules/dropfix.yml)"), "{text}");
    for section in ["OPTIONS", "EXAMPLES:", "RETURN VALUES:", "ATTRIBUTES:"] {
        assert!(text.contains(section), "no {section}:\n{text}");
    }
    assert!(
        text.contains("This module has a corresponding action plugin"),
        "{text}"
    );
    assert!(
        text.contains("ansible-playbook -i inventory.ini dropfix.dropfix.fix --check --diff"),
        "{text}"
    );

    // The documented options are exactly the module's (src/ansible.rs refuses any other) and
    // the action plugin's own two.
    let json = ansible_doc(&venv, dir.path(), &["--json", "dropfix.dropfix.dropfix"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("ansible-doc --json");
    let doc = &v["dropfix.dropfix.dropfix"]["doc"];
    let options: Vec<&str> = doc["options"]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        options,
        [
            "binaries",
            "deliver",
            "dropfix",
            "restart",
            "root",
            "state",
            "strategy",
            "systemd_version",
            "units"
        ],
        "{json}"
    );
    assert_eq!(
        doc["options"]["state"]["choices"],
        serde_json::json!(["fixed", "reverted"])
    );
    assert_eq!(
        doc["options"]["strategy"]["choices"],
        serde_json::json!(["drop-in", "full-copy"])
    );
    let ret = &v["dropfix.dropfix.dropfix"]["return"];
    for key in ["msg", "rc", "cmd", "stderr", "dropfix", "binary"] {
        assert!(ret.get(key).is_some(), "return value {key}: {json}");
    }
    let listed = ansible_doc(&venv, dir.path(), &["-l", "dropfix.dropfix"]);
    assert!(listed.contains("dropfix.dropfix.dropfix"), "{listed}");
}

#[test]
fn ansible_check_diff_then_fix_then_nothing_on_three_hosts_without_python_or_dropfix() {
    let venv = ansible_venv();
    let work = tempfile::Builder::new()
        .prefix("dropfix-ansible-")
        .tempdir()
        .expect("tempdir");
    let work = work.path();
    install_collection(&venv, &work.join("collections"));
    let want_sha = {
        let out = Command::new("sha256sum")
            .arg(dropfix_bin())
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let key = work.join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "dropfix-test", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let pubkey = fs::read_to_string(key.with_extension("pub")).expect("public key");

    let setup = Setup::real_docker()
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
        // No Python on the targets: the module must not need one. No dropfix either: the
        // action plugin delivers it.
        let py = c.sh("command -v python3 python3.11 python");
        assert!(
            !py.status.success(),
            "python on {}: {}",
            c.name(),
            String::from_utf8_lossy(&py.stdout)
        );
        let bin = c.sh("command -v dropfix || ls /opt/bin/dropfix /usr/local/bin/dropfix");
        assert!(
            !bin.status.success(),
            "dropfix on {}: {}",
            c.name(),
            String::from_utf8_lossy(&bin.stdout)
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

    // 1. --check --diff: every host would change, shows the override, and nothing changes: the
    // binary ran from Ansible's remote temporary directory and went with it.
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
        assert!(
            !c.path(INSTALLED).exists(),
            "{}: installed in check mode",
            c.name()
        );
        assert!(
            !c.path("/opt/bin").exists(),
            "{}: /opt/bin made in check mode",
            c.name()
        );
        assert_eq!(
            c.sh_ok("find /root/.ansible/tmp -mindepth 1 2>/dev/null | wc -l")
                .trim(),
            "0",
            "{}: left in the remote temporary directory",
            c.name()
        );
        assert!(
            p.out.contains(&format!(
                "{}: docker.service MountFlags slave -> (unset) (drop-in); changed=True restarted=False binary={INSTALLED} (x86_64, would be installed)",
                c.name()
            )),
            "{}: the preview ran the delivered binary:\n{}",
            c.name(),
            p.out
        );
        assert_eq!(mount_flags(c), "524288", "{}", c.name());
        assert_eq!(
            c.main_pid("docker.service"),
            *pid,
            "{}: restarted",
            c.name()
        );
    }

    // 2. The real run installs the binary and fixes every host, one host at a time (serial 25%
    // of 3 hosts: batches of one): files, reload, one restart, dockerd in PID 1's namespace.
    let p = play(&venv, work, &["--diff"]);
    assert_recap(&p, &fleet, 1);
    assert_eq!(
        p.out.matches(TASK).count(),
        HOSTS,
        "one batch a host:\n{}",
        p.out
    );
    let mut after = Vec::new();
    let mut started = Vec::new();
    for (c, pid) in fleet.iter().zip(&pids) {
        assert_eq!(sha256_on(c, INSTALLED), want_sha, "{}", c.name());
        let mode = c.sh_ok(&format!("stat -c %a {INSTALLED}"));
        assert_eq!(mode.trim(), "755", "{}", c.name());
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
                "{}: docker.service MountFlags slave -> (unset) (drop-in, restarted); changed=True restarted=True binary={INSTALLED} (x86_64, installed)",
                c.name()
            )),
            "{}: the module returned dropfix's report:\n{}",
            c.name(),
            p.out
        );
        after.push(now);
        let t = c.property(
            "docker.service",
            "org.freedesktop.systemd1.Service",
            "ExecMainStartTimestampMonotonic",
        );
        started.push(t.parse::<u64>().unwrap_or(0));
    }
    // The batches ran in inventory order, each restart after the one before it (the containers
    // share the host's monotonic clock).
    assert!(
        started.windows(2).all(|w| w[0] < w[1]),
        "docker restarted out of order: {started:?}"
    );

    // 3. Again: nothing to do anywhere, nothing restarted, the binary left as it is.
    let inodes: Vec<String> = fleet
        .iter()
        .map(|c| c.sh_ok(&format!("stat -c %i {INSTALLED}")))
        .collect();
    let p = play(&venv, work, &[]);
    assert_recap(&p, &fleet, 0);
    for (c, inode) in fleet.iter().zip(&inodes) {
        let now = c.sh_ok(&format!("stat -c %i {INSTALLED}"));
        assert_eq!(&now, inode, "{}: binary replaced", c.name());
        assert!(
            p.out
                .contains(&format!("binary={INSTALLED} (x86_64, unchanged)")),
            "{}",
            p.out
        );
    }
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
    let module = fs::read(top().join("packaging/ansible/plugins/modules/dropfix")).expect("module");
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
