//! Live restore against a real dockerd: containers started while docker.service has
//! `MountFlags=slave` keep running through the restart that removes it, and their sandboxes stay
//! bind-mounted only in the old mount namespace, which the containers' shims keep alive. From the
//! host, `dropfix::docker` reads the daemon over its socket and `dropfix::netns` classifies the
//! sandboxes as held (by the shims, in docker.service), names the containers, and advises
//! `docker restart`, after which each sandbox is enterable. Needs root; never skips.

mod support;

use dropfix::docker;
use dropfix::netns::{self, Class, Entry};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{Container, Setup};

const UP: Duration = Duration::from_secs(60);
const DIRS: &[&str] = &["/run/docker/netns", "/var/run/docker/netns"];
const NAMES: [&str; 2] = ["c1", "c2"];

fn mount_flags(c: &Container) -> String {
    c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "MountFlags",
    )
}

fn sock(c: &Container) -> PathBuf {
    c.path(docker::SOCKET)
}

/// The containers and their sandboxes as the host sees them: dropfix's own reading.
fn classify(c: &Container) -> (Vec<docker::Container>, Vec<Entry>) {
    let list = docker::containers(&sock(c)).expect("Engine API from the host");
    let view = c.proc_view();
    let entries = netns::classify_dirs(view.path(), DIRS, &list);
    (list, entries)
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or_default()
}

/// `docker inspect`'s SandboxKey, as docker spells it (`/var/run/docker/netns/<id>`).
fn sandbox_key(c: &Container, name: &str) -> String {
    c.sh_ok(&format!(
        "docker inspect -f '{{{{.NetworkSettings.SandboxKey}}}}' {name}"
    ))
    .trim()
    .to_string()
}

/// `readlink /proc/<pid>/ns/mnt` inside the container.
fn mount_ns(c: &Container, pid: u32) -> String {
    c.sh_ok(&format!("readlink /proc/{pid}/ns/mnt"))
        .trim()
        .to_string()
}

/// Host-side facts, without dropfix: is the sandbox an nsfs mount in the container's PID 1
/// view, and which container processes (inside PIDs) have it mounted in their namespace?
fn sandbox_facts(c: &Container, key: &str) -> (bool, Vec<(u32, String, String)>) {
    let real = format!("/run/docker/netns/{}", basename(key));
    let host_path = c.path(&real);
    let nsfs = dropfix::verify::is_nsfs(&host_path)
        .unwrap_or_else(|e| panic!("statfs {}: {e}", host_path.display()));
    let out = c.sh_ok(&format!(
        "for p in /proc/[0-9]*; do grep -qs ' {real} ' $p/mountinfo && echo ${{p#/proc/}} $(cat $p/comm) $(readlink $p/ns/mnt); done; true"
    ));
    let holders = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect();
    (nsfs, holders)
}

fn entry<'a>(entries: &'a [Entry], key: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| basename(&e.path) == basename(key))
        .unwrap_or_else(|| panic!("no entry for {key} in {entries:#?}"))
}

#[test]
fn live_restore_containers_are_classified_held() {
    let setup = Setup::real_docker()
        .live_restore()
        .dockerd_owns_containerd();
    let c = Container::boot("docker-live-restore", &setup);
    c.wait_active_state("docker.service", &["active"], UP);
    assert_eq!(mount_flags(&c), "524288", "MountFlags=slave");
    let pid1_ns = mount_ns(&c, 1);
    assert_ne!(
        mount_ns(&c, c.main_pid("docker.service")),
        pid1_ns,
        "dockerd has a mount namespace of its own"
    );

    let info = docker::info(&sock(&c)).expect("GET /info from the host");
    assert!(info.live_restore, "{info:?}");
    assert!(info.server_version.starts_with("20.10."), "{info:?}");

    // With dockerd's own containerd, `docker run` works under MountFlags=slave.
    let image = c.docker_import_busybox();
    for name in NAMES {
        // Exits on SIGTERM, so `docker restart` need not wait 10 s to kill it.
        c.sh_ok(&format!(
            "docker run -d --name {name} {image} sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"
        ));
    }
    let info = docker::info(&sock(&c)).expect("GET /info");
    assert_eq!(info.containers_running, 2);

    // Before the fix, every sandbox lives in dockerd's namespace only.
    let (list, entries) = classify(&c);
    for name in NAMES {
        let ct = list.iter().find(|x| x.name == name).expect("listed");
        assert!(ct.running && ct.pid > 0, "{ct:?}");
        assert_eq!(ct.sandbox_key, sandbox_key(&c, name));
        let e = entry(&entries, &ct.sandbox_key);
        assert_eq!(e.class, Class::Held, "{e:#?}");
        assert_eq!(e.container.as_ref().map(|x| x.name.as_str()), Some(name));
        assert!(e.holders.iter().any(|h| h.command == "dockerd"), "{e:#?}");
    }
    assert_eq!(
        netns::restart_advice(&entries).as_deref(),
        Some("docker restart c1 c2")
    );
    let keys_before: Vec<String> = NAMES.iter().map(|n| sandbox_key(&c, n)).collect();
    let pids_before: Vec<String> = NAMES
        .iter()
        .map(|n| c.sh_ok(&format!("docker inspect -f '{{{{.State.Pid}}}}' {n}")))
        .collect();

    // The fix, done by hand: a drop-in that empties MountFlags, reload, restart.
    c.write_file(
        "/etc/systemd/system/docker.service.d/zz.conf",
        "[Service]\nMountFlags=\n",
    );
    c.sh_ok("systemctl daemon-reload && systemctl restart docker.service");
    c.wait_active_state("docker.service", &["active"], UP);
    assert_eq!(mount_flags(&c), "0");
    let dockerd = c.main_pid("docker.service");
    assert_eq!(
        mount_ns(&c, dockerd),
        pid1_ns,
        "dockerd in PID 1's namespace"
    );

    // Live restore kept the containers; their sandboxes are still the old ones.
    for (i, name) in NAMES.iter().enumerate() {
        let pid = c.sh_ok(&format!("docker inspect -f '{{{{.State.Pid}}}}' {name}"));
        assert_eq!(pid, pids_before[i], "{name} kept running");
        assert_eq!(sandbox_key(&c, name), keys_before[i]);
    }

    // The facts the classification rests on, gathered without dropfix.
    for key in &keys_before {
        let (nsfs, holders) = sandbox_facts(&c, key);
        assert!(!nsfs, "{key} is a plain file in PID 1's view");
        assert!(!holders.is_empty(), "some namespace still mounts {key}");
        for (pid, comm, ns) in &holders {
            assert_ne!(
                ns, &pid1_ns,
                "holder {pid} {comm} is outside PID 1's namespace"
            );
        }
        eprintln!("after the restart, {key} is mounted in: {holders:?}");
        let err = c
            .host_nsenter_net_ok(&format!("/run/docker/netns/{}", basename(key)))
            .expect_err("not enterable from the host");
        assert!(err.contains("Invalid argument"), "{key}: {err}");
    }

    // dropfix's reading of the same: held, by the shims, in docker.service.
    let (_, entries) = classify(&c);
    eprintln!("dropfix::netns after the restart: {entries:#?}");
    for (i, name) in NAMES.iter().enumerate() {
        let e = entry(&entries, &keys_before[i]);
        assert_eq!(e.class, Class::Held, "{e:#?}");
        assert_eq!(e.container.as_ref().map(|x| x.name.as_str()), Some(*name));
        assert!(e.holder_count >= 1 && !e.holders.is_empty(), "{e:#?}");
        for h in &e.holders {
            let inner = c.inner_pid(h.pid).expect("holder inside the container");
            assert_ne!(mount_ns(&c, inner), pid1_ns);
        }
        assert!(
            e.holders
                .iter()
                .any(|h| h.command.starts_with("containerd-shim")
                    && h.unit.as_deref() == Some("docker.service")),
            "a containerd shim in docker.service holds it: {e:#?}"
        );
    }
    let advice = netns::restart_advice(&entries);
    assert_eq!(advice.as_deref(), Some("docker restart c1 c2"));

    // Following the advice gives each container a sandbox made in PID 1's namespace.
    c.sh_ok(advice.as_deref().unwrap_or_default());
    for name in NAMES {
        let key = c.sandbox_key(name);
        c.host_nsenter_net_ok(&key)
            .unwrap_or_else(|e| panic!("{name}: nsenter --net={key} from the host: {e}"));
    }
    let entries = wait_nothing_held(&c, Duration::from_secs(10));
    assert!(
        entries.iter().all(|e| e.class != Class::Held),
        "the old namespace is gone with the old shims: {entries:#?}"
    );
    for name in NAMES {
        let e = entry(&entries, &sandbox_key(&c, name));
        assert_eq!(e.class, Class::Enterable, "{e:#?}");
        assert_eq!(e.container.as_ref().map(|x| x.name.as_str()), Some(name));
    }
    // What the old sandboxes left behind, if anything, is stale.
    for key in &keys_before {
        if let Some(e) = entries.iter().find(|e| basename(&e.path) == basename(key)) {
            if e.container.is_none() {
                assert_eq!(e.class, Class::Stale, "{e:#?}");
            }
        }
    }
    assert_eq!(netns::restart_advice(&entries), None);
    c.docker_rm_all();
}

/// Why the test above needs [`Setup::dockerd_owns_containerd`]: with Debian's own layout
/// (containerd.service in PID 1's mount namespace) and `MountFlags=slave`, runc finds an empty
/// root file system (seen here with live restore on).
#[test]
fn with_debians_separate_containerd_docker_run_fails_under_mountflags_slave() {
    let c = Container::boot(
        "docker-sep-containerd",
        &Setup::real_docker().live_restore(),
    );
    c.wait_active_state("docker.service", &["active"], UP);
    assert_eq!(mount_flags(&c), "524288");
    let image = c.docker_import_busybox();
    let run = c.sh(&format!("docker run -d --name c1 {image} sleep 3600"));
    let err = String::from_utf8_lossy(&run.stderr);
    eprintln!(
        "docker run with Debian's containerd.service: {}",
        err.trim()
    );
    assert!(!run.status.success());
    assert!(
        err.contains("executable file not found"),
        "runc saw no root file system: {err}"
    );
    c.docker_rm_all();
}

/// Classifies until no entry is held (the old shims exit just after `docker restart` returns).
fn wait_nothing_held(c: &Container, timeout: Duration) -> Vec<Entry> {
    let t0 = Instant::now();
    loop {
        let (_, entries) = classify(c);
        if entries.iter().all(|e| e.class != Class::Held) || t0.elapsed() > timeout {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `dropfix` run inside the container, stdin from /dev/null unless `stdin` says otherwise.
fn dropfix(c: &Container, args: &str) -> (i32, String, String) {
    let out = c.sh(&format!("dropfix {args} </dev/null"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// What dropfix itself says under live-restore: the preview and the prompt count the running
/// containers and say live-restore is on; after `fix --yes` docker is fixed but both
/// containers' namespaces are still held, so `verify.ok` is false, the exit status is 4 and
/// both containers are named with `docker restart c1 c2`; doctor gives that command (never
/// `dropfix fix`), and once it has run doctor says healthy.
#[test]
fn fix_yes_under_live_restore_names_the_held_containers_and_exits_4() {
    let setup = Setup::real_docker()
        .live_restore()
        .dockerd_owns_containerd()
        .install_binary(support::dropfix_bin(), "/usr/local/bin/dropfix");
    let c = Container::boot("docker-lr-fix", &setup);
    c.wait_active_state("docker.service", &["active"], UP);
    let image = c.docker_import_busybox();
    for name in NAMES {
        c.sh_ok(&format!(
            "docker run -d --name {name} {image} sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"
        ));
    }

    // The preview says what a restart stops.
    let (code, out, err) = dropfix(&c, "fix --dry-run --format json");
    assert_eq!(code, 0, "{err}");
    let j = json(&out);
    assert_eq!(j["impact"]["running_containers"], 2, "{j}");
    assert_eq!(j["impact"]["live_restore"], true, "{j}");
    let (_, text, _) = dropfix(&c, "fix --dry-run");
    assert!(
        text.contains("docker runs 2 container(s); live-restore is on"),
        "{text}"
    );

    // The prompt, on a pseudo-terminal (script(1) gives dropfix one): it says the same, and
    // a "n" writes nothing.
    let before = c.sh_ok("ls -R /etc/systemd/system; ls /var/lib/dropfix 2>&1 || true");
    let out = c.sh("printf 'n\\n' | script -qec 'dropfix fix' /dev/null");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("Restart docker.service now?"), "{shown}");
    assert!(
        shown.contains("Docker runs 2 container(s); live-restore is on"),
        "{shown}"
    );
    assert!(shown.contains("not confirmed: nothing written"), "{shown}");
    assert_eq!(
        c.sh_ok("ls -R /etc/systemd/system; ls /var/lib/dropfix 2>&1 || true"),
        before
    );

    // fix --yes: docker fixed, containers kept running, their namespaces still held.
    let (code, out, err) = dropfix(&c, "fix --yes --format json");
    let j = json(&out);
    assert_eq!(code, 4, "docker fixed, containers unreachable: {err}\n{j}");
    assert_eq!(j["restarted"], true);
    assert_eq!(j["rolled_back"], false);
    assert!(j["error"].is_null(), "{j}");
    let v = &j["units"][0]["verify"];
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(mount_flags(&c), "0");
    let mut held: Vec<String> = j["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["container"]["name"].as_str().unwrap_or("?").to_string())
        .collect();
    held.sort();
    assert_eq!(held, ["c1", "c2"], "{j}");
    for e in j["unreachable"].as_array().unwrap() {
        assert_eq!(e["class"], "held");
        assert!(e["holders"][0]["pid"].as_u64().unwrap() > 0, "{e}");
        assert!(e["holders"][0]["mount_ns"]
            .as_str()
            .unwrap()
            .starts_with("mnt:["));
    }
    assert_eq!(j["advice"][0], "docker restart c1 c2", "{j}");
    // The text run says so too.
    let (code, text, _) = dropfix(&c, "fix --yes");
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("docker restart c1 c2"), "{text}");

    // doctor: the command that helps, never `dropfix fix`.
    let (code, out, _) = dropfix(&c, "doctor --format json");
    let d = json(&out);
    assert_eq!(code, 3, "{d}");
    assert_eq!(
        d["commands"],
        serde_json::json!(["docker restart c1 c2"]),
        "{d}"
    );
    let nets: Vec<&serde_json::Value> = d["host"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "netns" && f["status"] == "problem")
        .collect();
    assert_eq!(nets.len(), 2, "{d}");
    for f in &nets {
        assert!(f["netns"]["container"]["id"].as_str().unwrap().len() >= 12);
        assert!(f["netns"]["holders"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("containerd-shim"));
    }

    c.sh_ok("docker restart c1 c2");
    for name in NAMES {
        let key = c.sandbox_key(name);
        c.host_nsenter_net_ok(&key)
            .unwrap_or_else(|e| panic!("{name}: {key}: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, _) = dropfix(&c, "doctor --format json");
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "doctor never healthy: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    c.docker_rm_all();
}
