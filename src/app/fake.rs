//! A recording fake of the service manager that drives `fix`, `revert`, `set` and `unset`
//! through the one executor: which calls happen in which order, what is on disk after each
//! outcome, and the consent rule. What systemd really does is shown by the live tests against
//! a real systemd (tests/live.rs, tests/consent.rs).

use super::*;
use crate::cli::{LiveArgs, RestartArgs};
use crate::manager::{ActiveState, LoadState, PropValue};
use std::collections::HashMap;
use std::fs;
use std::sync::{Arc, Mutex};

const DROPIN: &str = "etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";
const SETTINGS: &str = "etc/systemd/system/docker.service.d/zz-dropfix-settings.conf";
const SLAVE: u64 = 524_288;
/// The main process's pid in the fake's answers.
const MAIN: u32 = 42;

/// What the fake systemd has loaded and runs.
struct World {
    root: PathBuf,
    calls: Vec<String>,
    /// MountFlags loaded at the last reload.
    flags: u64,
    /// Settings loaded at the last reload (from dropfix's settings drop-in).
    props: HashMap<String, PropValue>,
    /// MountFlags the running process was started with.
    running_flags: u64,
    active: ActiveState,
    started_us: u64,
    /// Scripted restart outcomes, first one first; `Done` when empty.
    restarts: Vec<JobOutcome>,
    fail_reload: bool,
}

impl World {
    /// Reads the root's files the way systemd would for this one unit.
    fn load(&mut self) {
        self.flags = if self.root.join(DROPIN).exists() {
            0
        } else {
            SLAVE
        };
        self.props.clear();
        if let Ok(text) = fs::read_to_string(self.root.join(SETTINGS)) {
            for l in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            {
                if let Some((k, v)) = l.split_once('=') {
                    let v = match v.parse::<u64>() {
                        Ok(n) => PropValue::Num(n),
                        Err(_) => PropValue::Str(v.to_string()),
                    };
                    self.props.insert(k.to_string(), v);
                }
            }
        }
    }
    /// The main process's mount namespace follows the flags it was started with.
    fn set_proc(&self) {
        let link = self.root.join(format!("proc/{MAIN}/ns/mnt"));
        let _ = fs::remove_file(&link);
        let ns = if self.running_flags == 0 {
            "mnt:[1]"
        } else {
            "mnt:[2]"
        };
        std::os::unix::fs::symlink(ns, link).unwrap();
    }
}

#[derive(Clone)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn calls(&self) -> Vec<String> {
        let mut w = self.0.lock().unwrap();
        std::mem::take(&mut w.calls)
            .into_iter()
            .filter(|c| !c.starts_with("unit ") && !c.starts_with("props ") && c != "version")
            .collect()
    }
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }
}

impl ServiceManager for Fake {
    fn version(&mut self) -> Result<String> {
        self.w().calls.push("version".into());
        Ok("252.39-1~deb12u2".into())
    }
    fn unit(&mut self, name: &str) -> Result<UnitState> {
        let mut w = self.w();
        w.calls.push(format!("unit {name}"));
        if name != "docker.service" {
            return Ok(UnitState {
                id: name.into(),
                names: vec![name.into()],
                load_state: LoadState::NotFound,
                ..UnitState::default()
            });
        }
        let mut dropins = Vec::new();
        for d in [DROPIN, SETTINGS] {
            if w.root.join(d).exists() {
                dropins.push(format!("/{d}"));
            }
        }
        Ok(UnitState {
            id: name.into(),
            names: vec![name.into()],
            load_state: LoadState::Loaded,
            active_state: w.active.clone(),
            sub_state: "running".into(),
            fragment_path: "/usr/lib/systemd/system/docker.service".into(),
            drop_in_paths: dropins,
            mount_flags: Some(w.flags),
            main_pid: if w.active.is_running() { MAIN } else { 0 },
            active_enter_us: w.started_us,
            ..UnitState::default()
        })
    }
    fn reload(&mut self) -> Result<()> {
        let mut w = self.w();
        w.calls.push("reload".into());
        if w.fail_reload {
            anyhow::bail!("Access denied");
        }
        w.load();
        Ok(())
    }
    fn restart(&mut self, name: &str, _: Duration) -> Result<JobOutcome> {
        let mut w = self.w();
        w.calls.push(format!("restart {name}"));
        let o = if w.restarts.is_empty() {
            JobOutcome::Done
        } else {
            w.restarts.remove(0)
        };
        if o == JobOutcome::Done {
            w.active = ActiveState::Active;
            w.running_flags = w.flags;
            w.started_us = now_us();
            w.set_proc();
        } else {
            w.active = ActiveState::Failed;
        }
        Ok(o)
    }
    fn unit_properties(&mut self, name: &str) -> Result<HashMap<String, PropValue>> {
        let mut w = self.w();
        w.calls.push(format!("props {name}"));
        Ok(w.props.clone())
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A root with the vendor docker.service (MountFlags=slave), running with it.
fn world() -> (tempfile::TempDir, Fake) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join("docker.service"),
        "[Service]\nExecStart=/usr/bin/dockerd\nMountFlags=slave\nLimitNOFILE=1024\n",
    )
    .unwrap();
    let proc = t.path().join("proc");
    fs::create_dir_all(proc.join("1/ns")).unwrap();
    fs::create_dir_all(proc.join(format!("{MAIN}/ns"))).unwrap();
    std::os::unix::fs::symlink("mnt:[1]", proc.join("1/ns/mnt")).unwrap();
    let mut w = World {
        root: t.path().to_path_buf(),
        calls: Vec::new(),
        flags: SLAVE,
        props: HashMap::new(),
        running_flags: SLAVE,
        active: ActiveState::Active,
        started_us: 1,
        restarts: Vec::new(),
        fail_reload: false,
    };
    w.load();
    w.set_proc();
    (t, Fake(Arc::new(Mutex::new(w))))
}

/// A live context on the fake, with or without a terminal that answers `answer`.
fn ctx(t: &tempfile::TempDir, fake: &Fake, tty: bool, answer: bool) -> Ctx {
    let f = fake.clone();
    Ctx {
        root: Root::new(t.path()).unwrap(),
        offline: false,
        format: Format::Json,
        style: Style { color: false },
        proc_root: t.path().join("proc"),
        docker_sock: t.path().join("no-docker.sock"),
        with_contents: false,
        tty,
        ask: Box::new(move |_| Ok(answer)),
        connect: Box::new(move || Ok(Box::new(f.clone()) as Box<Manager>)),
    }
}

fn fix_args(yes: bool, no_restart: bool) -> FixArgs {
    FixArgs {
        units: vec![],
        dry_run: false,
        check: false,
        systemd_version: None,
        strategy: None,
        link_ip_netns: false,
        replace_copy: false,
        live: LiveArgs {
            yes,
            no_restart,
            timeout: 5,
        },
    }
}

fn revert_args(yes: bool, no_restart: bool) -> RevertArgs {
    RevertArgs {
        units: vec![],
        dry_run: false,
        live: LiveArgs {
            yes,
            no_restart,
            timeout: 5,
        },
    }
}

fn set(c: &Ctx, key_value: &str, restart: bool, yes: bool) -> i32 {
    let unit = UnitName::parse("docker.service").unwrap();
    let op = crate::settings::parse_op("service", key_value, true, false).unwrap();
    settings::edit_settings(
        c,
        "set",
        &unit,
        &[op],
        false,
        false,
        &RestartArgs {
            restart,
            yes,
            timeout: 5,
        },
    )
    .unwrap()
}

/// Every file under the root but the fake /proc, with its content.
fn tree(t: &tempfile::TempDir) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut es: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if rel == "proc" {
                continue;
            }
            if p.is_dir() {
                out.push((rel, Vec::new()));
                walk(base, &p, out);
            } else {
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(t.path(), t.path(), &mut out);
    out
}

use std::path::Path;

#[test]
fn fix_with_consent_writes_then_reloads_then_restarts_once() {
    let (t, f) = world();
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), ["reload", "restart docker.service"]);
    assert!(t.path().join(DROPIN).exists());
    // Fixed and restarted: a second run does nothing at all.
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), Vec::<String>::new());
}

#[test]
fn no_terminal_and_no_flag_refuses_before_anything_is_written() {
    let (t, f) = world();
    let before = tree(&t);
    for (tty, answer) in [(false, false), (true, false)] {
        let code = fix::fix(&ctx(&t, &f, tty, answer), &fix_args(false, false)).unwrap();
        assert_eq!(code, 1, "tty={tty}");
        assert_eq!(f.calls(), Vec::<String>::new(), "no reload, no restart");
        assert_eq!(tree(&t), before, "nothing written");
    }
    // A yes on the terminal goes ahead.
    assert_eq!(
        fix::fix(&ctx(&t, &f, true, true), &fix_args(false, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), ["reload", "restart docker.service"]);
}

#[test]
fn a_deferred_fix_restart_is_performed_by_the_next_run_with_consent() {
    let (t, f) = world();
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(false, true)).unwrap(),
        0
    );
    assert_eq!(f.calls(), ["reload"]);
    // Files fixed and loaded; the process still runs in its own namespace. Without consent
    // the next run refuses; with --no-restart again it does nothing new; with --yes it restarts.
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(false, false)).unwrap(),
        1
    );
    assert_eq!(f.calls(), Vec::<String>::new());
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(false, true)).unwrap(),
        0
    );
    assert_eq!(f.calls(), Vec::<String>::new());
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), ["restart docker.service"]);
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), Vec::<String>::new());
}

#[test]
fn failed_restart_restores_files_reloads_and_restarts_again() {
    let (t, f) = world();
    f.w().restarts = vec![JobOutcome::Failed {
        result: "failed".into(),
    }];
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        1
    );
    assert_eq!(
        f.calls(),
        [
            "reload",
            "restart docker.service",
            "reload",
            "restart docker.service"
        ]
    );
    assert!(!t.path().join(DROPIN).exists());
    assert!(!t.path().join("var/lib/dropfix").exists(), "no state left");
    assert!(
        !t.path().join("etc").exists(),
        "created directories removed"
    );
}

#[test]
fn failed_reload_restores_files_and_never_restarts() {
    let (t, f) = world();
    let before = tree(&t);
    f.w().fail_reload = true;
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        1
    );
    assert_eq!(f.calls(), ["reload", "reload"]);
    assert_eq!(tree(&t), before);
}

#[test]
fn a_deferred_revert_restart_is_not_lost() {
    let (t, f) = world();
    let before = tree(&t);
    assert_eq!(
        fix::fix(&ctx(&t, &f, false, false), &fix_args(true, false)).unwrap(),
        0
    );
    f.calls();
    // No terminal, no flag: refused, nothing restored.
    assert_eq!(
        revert::revert(&ctx(&t, &f, false, false), &revert_args(false, false)).unwrap(),
        1
    );
    assert_eq!(f.calls(), Vec::<String>::new());
    assert!(t.path().join(DROPIN).exists());
    // --no-restart: files back, reloaded, restart left for later.
    assert_eq!(
        revert::revert(&ctx(&t, &f, false, false), &revert_args(false, true)).unwrap(),
        0
    );
    assert_eq!(f.calls(), ["reload"]);
    assert_eq!(tree(&t), before);
    // Nothing left to restore, but docker still runs in PID 1's namespace while systemd has
    // MountFlags=slave loaded: revert --yes performs the restart.
    assert_eq!(
        revert::revert(&ctx(&t, &f, false, false), &revert_args(true, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), ["restart docker.service"]);
    assert_eq!(
        revert::revert(&ctx(&t, &f, false, false), &revert_args(true, false)).unwrap(),
        0
    );
    assert_eq!(f.calls(), Vec::<String>::new());
}

#[test]
fn set_and_unset_go_through_the_same_consent_and_restart() {
    let (t, f) = world();
    let c = ctx(&t, &f, false, false);
    // --restart without --yes and no terminal: refused, nothing written.
    assert_eq!(set(&c, "Service.LimitNOFILE=4096", true, false), 1);
    assert_eq!(f.calls(), Vec::<String>::new());
    assert!(!t.path().join(SETTINGS).exists());
    // Without --restart: written and reloaded, the restart stays pending.
    assert_eq!(set(&c, "Service.LimitNOFILE=4096", false, false), 0);
    assert_eq!(f.calls(), ["reload"]);
    // The same set again with --restart --yes: nothing to write, but the unit started before
    // the change, so it is restarted now.
    assert_eq!(set(&c, "Service.LimitNOFILE=4096", true, true), 0);
    assert_eq!(f.calls(), ["restart docker.service"]);
    assert_eq!(set(&c, "Service.LimitNOFILE=4096", true, true), 0);
    assert_eq!(f.calls(), Vec::<String>::new());
    // unset with consent: write, reload, restart.
    let unit = UnitName::parse("docker.service").unwrap();
    let op = crate::settings::parse_op("service", "Service.LimitNOFILE", false, false).unwrap();
    let code = settings::edit_settings(
        &c,
        "unset",
        &unit,
        &[op],
        false,
        false,
        &RestartArgs {
            restart: true,
            yes: true,
            timeout: 5,
        },
    )
    .unwrap();
    assert_eq!(code, 0);
    assert_eq!(f.calls(), ["reload", "restart docker.service"]);
    assert!(!t.path().join(SETTINGS).exists());
}

#[test]
fn a_failed_restart_after_set_puts_the_drop_in_back() {
    let (t, f) = world();
    let c = ctx(&t, &f, false, false);
    let before = tree(&t);
    f.w().restarts = vec![JobOutcome::TimedOut];
    assert_eq!(set(&c, "Service.LimitNOFILE=4096", true, true), 1);
    assert_eq!(
        f.calls(),
        [
            "reload",
            "restart docker.service",
            "reload",
            "restart docker.service"
        ]
    );
    assert_eq!(tree(&t), before);
}
