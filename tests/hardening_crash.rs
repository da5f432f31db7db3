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

mod common;

use common::*;
use std::time::{Duration, Instant};

struct Variant {
    name: &'static str,
    fixture: Fixture,
    fix: Vec<&'static str>,
}

fn variants() -> Vec<Variant> {
    let drop_in = host_like();
    drop_in
        .file(
            "/usr/lib/systemd/system/docker.service.d/~slave.conf",
            "[Service]\nMountFlags=slave\nLimitNOFILE=4096\n",
        )
        .file(
            "/etc/systemd/system/docker.service.d/10-admin.conf",
            "[Service]\nEnvironment=A=1\n",
        );
    let full_copy = host_like();
    full_copy
        .file_mode(
            "/etc/systemd/system/docker.service",
            format!("# admin copy\n{}", vendor_docker()),
            0o640,
        )
        .file(
            "/usr/lib/systemd/system/early-docker.service",
            "[Service]\nMountFlags=slave\nExecStart=/bin/true\n",
        );
    vec![
        // systemd 252: zz-dropfix drop-in plus a same-named copy hiding a vendor drop-in that
        // sets MountFlags again; the .d directory already exists with an admin drop-in.
        Variant {
            name: "drop-in",
            fixture: drop_in,
            fix: vec!["fix", "--systemd-version", "252"],
        },
        // systemd 231: full copies; one replaces an administrator's copy (kept as a backup,
        // mode 0640 restored), one is new.
        Variant {
            name: "full-copy",
            fixture: full_copy,
            fix: vec!["fix", "--systemd-version", "231"],
        },
        // The CoreOS 1192 image: no /etc/systemd/system and no /var yet, version from files.
        Variant {
            name: "coreos-image",
            fixture: coreos_example(),
            fix: vec!["fix"],
        },
    ]
}

fn is_temp(rel: &str) -> bool {
    rel.split('/').any(|c| c.starts_with(".#dropfix."))
}

/// The node at `rel` in `tree` is `node` (kind, bytes and mode; not mtime).
fn has(tree: &Snapshot, rel: &str, node: &Node) -> bool {
    tree.0.get(rel).is_some_and(|n| n.same(node, false))
}

/// The tree right after a kill, against the trees before and after an uninterrupted run.
fn check_interrupted(
    what: &str,
    orig: &Snapshot,
    done: &Snapshot,
    now: &Snapshot,
    created: &[String],
) {
    for (rel, node) in &now.0 {
        if is_temp(rel) {
            continue; // hidden: systemd skips it, and the next dropfix sweeps it
        }
        if rel == &format!("{STATE}/state.json") {
            let Kind::File(data) = &node.kind else {
                panic!("{what}: {rel} is not a file")
            };
            serde_json::from_slice::<serde_json::Value>(data)
                .unwrap_or_else(|e| panic!("{what}: partial manifest ({e}): {data:?}"));
            continue;
        }
        if let Some(b) = rel.strip_prefix(&format!("{STATE}/backup/")) {
            let original = format!("/{}", b.replace("%2F", "/").replace("%25", "%"));
            let (Kind::File(data), Some(Kind::File(want))) =
                (&node.kind, orig.0.get(&original).map(|n| &n.kind))
            else {
                panic!("{what}: backup {rel} does not match an original file")
            };
            assert_eq!(data, want, "{what}: backup {rel} is not the original");
            continue;
        }
        if node.kind == Kind::Dir {
            continue;
        }
        assert!(
            has(orig, rel, node) || has(done, rel, node),
            "{what}: {rel} is neither the old nor the new content: {node:?}\nold: {:?}\nnew: {:?}",
            orig.0.get(rel),
            done.0.get(rel)
        );
    }
    for (rel, node) in orig.0.iter().chain(done.0.iter()) {
        if node.kind == Kind::Dir || rel.starts_with(STATE) {
            continue;
        }
        if !now.0.contains_key(rel) {
            assert!(
                !orig.0.contains_key(rel) || !done.0.contains_key(rel),
                "{what}: {rel} vanished (present before and after)"
            );
        }
    }
    for rel in created {
        // systemd skips dot files and never looks inside a dot directory.
        let hidden = rel.split('/').any(|c| c.starts_with('.'));
        assert!(
            hidden || done.0.contains_key(rel) || orig.0.contains_key(rel),
            "{what}: {rel} appeared, and it is neither hidden nor a final name"
        );
    }
}

fn expect_tree(what: &str, want: &Snapshot, root: &Fixture) {
    want.assert_same(&root.snapshot(), false, what);
}

fn ok(what: &str, root: &Fixture, args: &[&str]) {
    let r = root.run(args);
    assert_eq!(r.code, 0, "{what}: dropfix {args:?} failed\n{r}");
}

struct Calibrated {
    done: Snapshot,
    fix_time: Duration,
    fix_events: usize,
    revert_time: Duration,
    revert_events: usize,
}

fn calibrate(v: &Variant) -> Calibrated {
    let mut fix_times = Vec::new();
    let mut revert_times = Vec::new();
    let mut fix_events = 0;
    let mut revert_events = 0;
    let mut done = None;
    for _ in 0..5 {
        let root = v.fixture.copy();
        let orig = root.snapshot();
        let mut w = Watcher::new(root.path());
        let t = Instant::now();
        ok("calibration", &root, &v.fix);
        fix_times.push(t.elapsed());
        w.poll();
        fix_events = fix_events.max(w.events);
        let fixed = root.snapshot();
        assert!(
            !fixed.same(&orig, false),
            "{}: the fix changes nothing",
            v.name
        );
        // No name systemd could load appears on the way, even in a complete run.
        check_interrupted(v.name, &orig, &fixed, &fixed, &w.created);
        done = Some(fixed);
        let mut w = Watcher::new(root.path());
        let t = Instant::now();
        ok("calibration", &root, &["revert"]);
        revert_times.push(t.elapsed());
        w.poll();
        revert_events = revert_events.max(w.events);
        expect_tree(&format!("{}: revert", v.name), &orig, &root);
    }
    Calibrated {
        done: done.expect("five calibration runs"),
        fix_time: median(fix_times),
        fix_events,
        revert_time: median(revert_times),
        revert_events,
    }
}

#[test]
fn kill_9_at_random_points_never_leaves_a_partial_file_and_rerun_or_revert_recovers() {
    let runs: usize = std::env::var("DROPFIX_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240);
    let mut rng = Rng::from_env("DROPFIX_CRASH_SEED");
    let vs = variants();
    let cal: Vec<Calibrated> = vs.iter().map(calibrate).collect();
    let mut killed = 0;
    let mut by_state = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..runs {
        let vi = i % vs.len();
        let (v, c) = (&vs[vi], &cal[vi]);
        let revert_phase = (i / vs.len()) % 2 == 1;
        let root = v.fixture.copy();
        let orig = root.snapshot();
        if revert_phase {
            ok("setup", &root, &v.fix);
        }
        let (args, time, events) = if revert_phase {
            (vec!["revert"], c.revert_time, c.revert_events)
        } else {
            (v.fix.clone(), c.fix_time, c.fix_events)
        };
        let mut w = Watcher::new(root.path());
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
        if run_and_kill(root.command(&args), &mut w, k, after) {
            killed += 1;
        }
        let now = root.snapshot();
        check_interrupted(&what, &orig, &c.done, &now, &w.created);
        let state = if now.same(&orig, false) {
            "untouched"
        } else if now.same(&c.done, false) {
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
