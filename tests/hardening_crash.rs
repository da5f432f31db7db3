//! Crash safety: `dropfix fix` and `dropfix revert` are SIGKILLed at random points, hundreds of
//! times, on fixture roots in temp dirs. Half of the kills are timed (a random instant within a
//! run's measured duration), half are triggered by the k-th file-system event dropfix causes
//! (inotify), so every write step gets hit. After each kill:
//!
//! - every file systemd could read is byte for byte its old or its new content, never partial;
//! - no name systemd could load ever appeared, even for a moment (temp files are `.#` hidden);
//! - the state manifest, when present, is whole, and every backup is the exact original;
//! - a rerun converges to the tree an uninterrupted run makes, and `revert` then gives back the
//!   original tree byte for byte (or `revert` straight after the kill does).
//!
//! `DROPFIX_CRASH_RUNS` sets the number of kills (default 240); `DROPFIX_CRASH_SEED` replays a
//! run. `scripts/crash.sh` runs thousands.

mod hardening_util;

use hardening_util::*;
use std::path::Path;
use std::time::{Duration, Instant};

struct Variant {
    name: &'static str,
    fixture: Fixture,
    fix: Vec<&'static str>,
}

fn variants() -> Vec<Variant> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/coreos-1192");
    let mut coreos = Fixture::new();
    for (rel, node) in snapshot(&example) {
        if let Node::File(mode, data) = node {
            coreos = coreos.raw(&format!("/{rel}"), mode, &data);
        }
    }
    vec![
        // systemd 252: zz-dropfix drop-in plus a same-named copy hiding a vendor drop-in that
        // sets MountFlags again; the .d directory already exists with an admin drop-in.
        Variant {
            name: "drop-in",
            fixture: host_like()
                .file(
                    "/usr/lib/systemd/system/docker.service.d/~slave.conf",
                    "[Service]\nMountFlags=slave\nLimitNOFILE=4096\n",
                )
                .file(
                    "/etc/systemd/system/docker.service.d/10-admin.conf",
                    "[Service]\nEnvironment=A=1\n",
                ),
            fix: vec!["fix", "--systemd-version", "252"],
        },
        // systemd 231: full copies; one replaces an administrator's copy (kept as a backup,
        // mode 0640 restored), one is new.
        Variant {
            name: "full-copy",
            fixture: host_like()
                .raw(
                    "/etc/systemd/system/docker.service",
                    0o640,
                    format!("# admin copy\n{}", vendor_docker()).as_bytes(),
                )
                .file(
                    "/usr/lib/systemd/system/early-docker.service",
                    "[Service]\nMountFlags=slave\nExecStart=/bin/true\n",
                ),
            fix: vec!["fix", "--systemd-version", "231"],
        },
        // The CoreOS 1192 image: no /etc/systemd/system and no /var yet, version from files.
        Variant {
            name: "coreos-image",
            fixture: coreos,
            fix: vec!["fix"],
        },
    ]
}

const STATE: &str = "var/lib/dropfix";

fn is_temp(rel: &str) -> bool {
    rel.split('/').any(|c| c.starts_with(".#dropfix."))
}

/// The tree right after a kill, against the trees before and after an uninterrupted run.
fn check_interrupted(what: &str, orig: &Tree, done: &Tree, now: &Tree, created: &[String]) {
    for (rel, node) in now {
        if is_temp(rel) {
            continue; // hidden: systemd skips it, and the next dropfix sweeps it
        }
        if rel == &format!("{STATE}/state.json") {
            let Node::File(_, data) = node else {
                panic!("{what}: {rel} is not a file")
            };
            serde_json::from_slice::<serde_json::Value>(data)
                .unwrap_or_else(|e| panic!("{what}: partial manifest ({e}): {data:?}"));
            continue;
        }
        if let Some(b) = rel.strip_prefix(&format!("{STATE}/backup/")) {
            let original = b.replace("%2F", "/").replace("%25", "%");
            let (Node::File(_, data), Some(Node::File(_, want))) = (node, orig.get(&original))
            else {
                panic!("{what}: backup {rel} does not match an original file")
            };
            assert_eq!(data, want, "{what}: backup {rel} is not the original");
            continue;
        }
        if matches!(node, Node::Dir(_)) {
            continue;
        }
        assert!(
            orig.get(rel) == Some(node) || done.get(rel) == Some(node),
            "{what}: {rel} is neither the old nor the new content: {node:?}\nold: {:?}\nnew: {:?}",
            orig.get(rel),
            done.get(rel)
        );
    }
    for (rel, node) in orig.iter().chain(done.iter()) {
        if matches!(node, Node::Dir(_)) || rel.starts_with(STATE) {
            continue;
        }
        if !now.contains_key(rel) {
            assert!(
                !orig.contains_key(rel) || !done.contains_key(rel),
                "{what}: {rel} vanished (present before and after)"
            );
        }
    }
    for rel in created {
        // systemd skips dot files and never looks inside a dot directory.
        let hidden = rel.split('/').any(|c| c.starts_with('.'));
        assert!(
            hidden || done.contains_key(rel) || orig.contains_key(rel),
            "{what}: {rel} appeared, and it is neither hidden nor a final name"
        );
    }
}

fn expect_tree(what: &str, want: &Tree, root: &Path) {
    let got = snapshot(root);
    assert!(
        &got == want,
        "{what}: tree differs:\n{}",
        tree_diff(want, &got)
    );
}

fn ok(what: &str, root: &Path, args: &[&str]) {
    let out = run(root, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: dropfix {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

struct Calibrated {
    done: Tree,
    fix_time: Duration,
    fix_events: usize,
    revert_time: Duration,
    revert_events: usize,
}

fn calibrate(base: &Path, v: &Variant) -> Calibrated {
    let mut fix_times = Vec::new();
    let mut revert_times = Vec::new();
    let mut fix_events = 0;
    let mut revert_events = 0;
    let mut done = Tree::new();
    for i in 0..5 {
        let root = base.join(format!("{}-cal{i}", v.name));
        std::fs::create_dir(&root).unwrap();
        v.fixture.build(&root);
        let orig = snapshot(&root);
        let mut w = Watcher::new(&root);
        let t = Instant::now();
        ok("calibration", &root, &v.fix);
        fix_times.push(t.elapsed());
        w.poll();
        fix_events = fix_events.max(w.events);
        done = snapshot(&root);
        assert_ne!(done, orig, "{}: the fix changes nothing", v.name);
        // No name systemd could load appears on the way, even in a complete run.
        check_interrupted(v.name, &orig, &done, &done, &rel_all(&root, &w.created));
        let mut w = Watcher::new(&root);
        let t = Instant::now();
        ok("calibration", &root, &["revert"]);
        revert_times.push(t.elapsed());
        w.poll();
        revert_events = revert_events.max(w.events);
        expect_tree(&format!("{}: revert", v.name), &orig, &root);
        std::fs::remove_dir_all(&root).unwrap();
    }
    Calibrated {
        done,
        fix_time: median(fix_times),
        fix_events,
        revert_time: median(revert_times),
        revert_events,
    }
}

fn rel_all(root: &Path, created: &[std::path::PathBuf]) -> Vec<String> {
    created
        .iter()
        .filter_map(|p| p.strip_prefix(root).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn kill_9_at_random_points_never_leaves_a_partial_file_and_rerun_or_revert_recovers() {
    let runs: usize = std::env::var("DROPFIX_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240);
    let mut rng = Rng::from_env("DROPFIX_CRASH_SEED");
    let base = tempfile::tempdir().unwrap();
    let vs = variants();
    let cal: Vec<Calibrated> = vs.iter().map(|v| calibrate(base.path(), v)).collect();
    let mut killed = 0;
    let mut by_state = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..runs {
        let vi = i % vs.len();
        let (v, c) = (&vs[vi], &cal[vi]);
        let revert_phase = (i / vs.len()) % 2 == 1;
        let root = base.path().join(format!("run{i}"));
        std::fs::create_dir(&root).unwrap();
        v.fixture.build(&root);
        let orig = snapshot(&root);
        if revert_phase {
            ok("setup", &root, &v.fix);
        }
        let (args, time, events) = if revert_phase {
            (vec!["revert"], c.revert_time, c.revert_events)
        } else {
            (v.fix.clone(), c.fix_time, c.fix_events)
        };
        let mut w = Watcher::new(&root);
        let mut full = vec!["--root", root.to_str().unwrap()];
        full.extend_from_slice(&args);
        let by_event = rng.below(2) == 0;
        let (k, after) = if by_event {
            (
                Some(1 + rng.below(events as u64) as usize),
                Duration::from_micros(rng.below(300)),
            )
        } else {
            (
                None,
                Duration::from_micros(rng.below(time.as_micros() as u64 * 13 / 10 + 1)),
            )
        };
        let what = format!(
            "run {i} ({}, {}, kill {})",
            v.name,
            args[0],
            match k {
                Some(k) => format!("after event {k} + {after:?}"),
                None => format!("at {after:?}"),
            }
        );
        if run_and_kill(dropfix(&full), &mut w, k, after) {
            killed += 1;
        }
        let now = snapshot(&root);
        check_interrupted(&what, &orig, &c.done, &now, &rel_all(&root, &w.created));
        let state = if now == orig {
            "untouched"
        } else if now == c.done {
            "complete"
        } else {
            "in between"
        };
        *by_state.entry(state).or_default() += 1;
        if rng.below(2) == 0 {
            // Rerun what was interrupted: it converges; then revert gives the original back.
            ok(&what, &root, &args);
            if revert_phase {
                expect_tree(&format!("{what}: revert rerun"), &orig, &root);
                ok(&what, &root, &v.fix);
            }
            expect_tree(&format!("{what}: fix rerun"), &c.done, &root);
            ok(&what, &root, &["revert"]);
            expect_tree(&format!("{what}: revert after rerun"), &orig, &root);
        } else {
            ok(&what, &root, &["revert"]);
            expect_tree(&format!("{what}: revert after the kill"), &orig, &root);
            // And the fix still applies cleanly afterwards.
            ok(&what, &root, &v.fix);
            expect_tree(&format!("{what}: fix after revert"), &c.done, &root);
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
    eprintln!(
        "{runs} runs, {killed} killed mid-run; trees right after the kill: {by_state:?}; \
         fix takes {:?} / {:?} / {:?} and {} / {} / {} file events",
        cal[0].fix_time,
        cal[1].fix_time,
        cal[2].fix_time,
        cal[0].fix_events,
        cal[1].fix_events,
        cal[2].fix_events
    );
}
