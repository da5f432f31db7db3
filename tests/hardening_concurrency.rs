//! Concurrency: 16 `dropfix fix` (or `revert`) processes at once on one root end in the state
//! one run makes, with exactly one set of writes (every file systemd or dropfix reads is renamed
//! into place once, seen with inotify), one process reporting a change, and the others saying
//! they waited.

mod common;

use common::*;
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};

const N: usize = 16;

/// The .d directory exists, so inotify sees every file written in it.
fn fixture() -> Fixture {
    let f = host_like();
    f.file(
        "/usr/lib/systemd/system/docker.service.d/~slave.conf",
        "[Service]\nMountFlags=slave\n",
    )
    .file(
        "/etc/systemd/system/docker.service.d/10-admin.conf",
        "[Service]\nEnvironment=A=1\n",
    );
    f
}

const FIX: &[&str] = &["--format", "json", "fix", "--systemd-version", "252"];

fn spawn(root: &Fixture, args: &[&str]) -> Child {
    root.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning dropfix")
}

struct Done {
    json: Value,
    stderr: String,
}

fn finish(mut c: Child, first_line: String) -> Done {
    let mut rest = String::new();
    c.stderr.take().unwrap().read_to_string(&mut rest).unwrap();
    let out = c.wait_with_output().unwrap();
    let stderr = first_line + &rest;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Done {
        json: serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}")),
        stderr,
    }
}

/// Non-hidden names created or renamed into place, with how often.
fn writes(w: &Watcher) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in &w.created {
        if !p.split('/').any(|c| c.starts_with('.')) {
            *out.entry(p.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// The tree one uninterrupted run makes from the fixture, and the original.
fn reference(args: &[&str]) -> (Snapshot, Snapshot) {
    let f = fixture();
    let orig = f.snapshot();
    f.run(args).expect_code(0);
    (orig, f.snapshot())
}

/// Panics unless the tree at `root` is `want` (bytes, modes, link targets; not mtimes).
fn assert_tree(want: &Snapshot, root: &Fixture, what: &str) {
    want.assert_same(&root.snapshot(), false, what);
}

fn assert_one_writer(what: &str, results: &[Done]) {
    let changed = results
        .iter()
        .filter(|d| d.json["changed"] == Value::Bool(true))
        .count();
    assert_eq!(changed, 1, "{what}: {changed} processes report a change");
    for d in results {
        for line in d.stderr.lines() {
            // The holder's pid is named unless it let go in between.
            assert!(
                line.starts_with("dropfix: another dropfix ")
                    && line.ends_with(" is working on this root; waiting for it to finish"),
                "{what}: unexpected stderr: {line}"
            );
        }
    }
}

#[test]
fn sixteen_fixes_that_all_waited_write_once_and_say_they_waited() {
    let (_, done) = reference(FIX);
    let root = fixture();
    // Hold the lock dropfix takes for an image root (its root directory) while all 16 start.
    let held = rfs::open(
        root.path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    rfs::flock(&held, FlockOperation::LockExclusive).unwrap();
    let mut w = Watcher::new(root.path());
    let mut waiting = Vec::new();
    for _ in 0..N {
        let mut c = spawn(&root, FIX);
        let mut err = BufReader::new(c.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        if line.is_empty() {
            let out = c.wait_with_output().unwrap();
            panic!("dropfix ended without waiting: {out:?}");
        }
        assert_eq!(
            line,
            format!(
                "dropfix: another dropfix (pid {}) is working on this root; waiting for it to finish\n",
                std::process::id()
            )
        );
        c.stderr = Some(err.into_inner());
        waiting.push((c, line));
    }
    w.poll();
    assert_eq!(w.events, 0, "a process wrote while another held the lock");
    drop(held);
    let results: Vec<Done> = waiting.into_iter().map(|(c, l)| finish(c, l)).collect();
    w.poll();
    assert_one_writer("all waited", &results);
    assert_tree(&done, &root, "all waited");
    let writes = writes(&w);
    assert!(
        writes.values().all(|n| *n == 1),
        "a file was written more than once: {writes:?}"
    );
    for f in [
        OWN_DROPIN,
        "/etc/systemd/system/docker.service.d/~slave.conf",
        STATE,
    ] {
        assert_eq!(writes.get(f), Some(&1), "{f}: {writes:?}");
    }
}

#[test]
fn sixteen_fixes_at_once_end_in_one_runs_state_with_one_set_of_writes() {
    let (_, done) = reference(FIX);
    for round in 0..3 {
        let root = fixture();
        let mut w = Watcher::new(root.path());
        let children: Vec<Child> = (0..N).map(|_| spawn(&root, FIX)).collect();
        let results: Vec<Done> = children
            .into_iter()
            .map(|c| finish(c, String::new()))
            .collect();
        w.poll();
        assert_one_writer("race", &results);
        assert_tree(&done, &root, &format!("race {round}"));
        let writes = writes(&w);
        assert!(
            writes.values().all(|n| *n == 1),
            "written more than once: {writes:?}"
        );
    }
}

#[test]
fn sixteen_reverts_at_once_restore_the_original_once() {
    let (orig, _) = reference(FIX);
    let root = fixture();
    root.run(FIX).expect_code(0);
    let mut w = Watcher::new(root.path());
    let children: Vec<Child> = (0..N)
        .map(|_| spawn(&root, &["--format", "json", "revert"]))
        .collect();
    let results: Vec<Done> = children
        .into_iter()
        .map(|c| finish(c, String::new()))
        .collect();
    w.poll();
    assert_one_writer("revert race", &results);
    assert_tree(&orig, &root, "revert race");
}
