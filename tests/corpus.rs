//! The real-world corpus (../shared/corpus/units): every file as the vendor docker.service of a
//! fresh root, and every drop-in-looking file as a vendor drop-in next to a `MountFlags=slave`
//! unit, for a systemd that ignores an empty `MountFlags=` (231) and one that resets on it
//! (252). A file that sets MountFlags must end up unset and stay fixed; one that does not must
//! need no change. Failures are collected so one run lists every failing file.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

const VERSIONS: &[&str] = &["231", "252"];

/// Files under units/ as ../shared/corpus/PROVENANCE.md lists them.
const CORPUS_FILES: usize = 77;
/// Of those, the drop-ins (`*.conf@<commit>`).
const CORPUS_DROP_INS: usize = 6;
/// Of those, the files in plain INI: UTF-8, no continuation lines, no CR.
const CORPUS_PLAIN: usize = 58;

fn corpus_dir() -> PathBuf {
    top().join("../shared/corpus/units")
}

/// Every regular file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let rd = fs::read_dir(&d).unwrap_or_else(|e| panic!("listing {}: {e}", d.display()));
        for e in rd {
            let p = e.expect("a dir entry").path();
            let ft = fs::symlink_metadata(&p).expect("metadata").file_type();
            if ft.is_dir() {
                todo.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Corpus names carry the commit they came from: `10-kubeadm.conf@af8551ab`.
fn real_name(p: &Path) -> String {
    let n = p.file_name().expect("a file name").to_string_lossy();
    n.split('@').next().unwrap_or(&n).to_string()
}

fn all_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "corpus not found at {} (expected ../shared/corpus/units next to the repo)",
        dir.display()
    );
    let files = files_under(&dir);
    assert!(
        files.len() >= CORPUS_FILES,
        "only {} corpus files under {}, PROVENANCE.md lists {CORPUS_FILES}",
        files.len(),
        dir.display()
    );
    files
}

/// Whether dropfix found MountFlags set, for the non-vacuity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Fixed,
    NothingToDo,
    /// systemd before 243 refuses a line without `=` in the fragment: the unit cannot load,
    /// and dropfix says so and changes nothing (templated units in the corpus have such lines).
    CannotLoad,
}

/// Run the contract on a prepared root; returns a description of what went wrong, if anything.
fn check_root(f: &Fixture, version: &str) -> Result<Outcome, String> {
    let before = f.snapshot();
    // Cross-check with the tests' own small reader (no continuations: none in the corpus
    // touches MountFlags).
    let v: u32 = version.parse().expect("a version number");
    let model = effective_mount_flags(f.path(), "docker.service", v);
    let r = f.run(&["fix", "--format", "json", "--systemd-version", version]);
    if r.code == 1 {
        // A "unit" without ExecStart=, ExecStop= or SuccessAction= (a drop-in, socket or target
        // file from the corpus used as docker.service): systemd refuses it (bad-setting).
        let data =
            std::fs::read(f.host("/usr/lib/systemd/system/docker.service")).unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        let runs_something = text.lines().map(str::trim).any(|l| {
            ["ExecStart=", "ExecStop=", "SuccessAction="]
                .iter()
                .any(|k| l.starts_with(k) && l.len() > k.len())
        });
        if !runs_something
            && r.stdout.contains("systemd cannot load docker.service")
            && r.stdout.contains("no ExecStart=")
        {
            let d = before.differences(&f.snapshot(), true);
            if !d.is_empty() {
                return Err(format!("refused, yet the tree changed:\n{d}{r}"));
            }
            return Ok(Outcome::CannotLoad);
        }
    }
    if r.code == 1 && v < 243 {
        let j: serde_json::Value =
            serde_json::from_str(&r.stdout).map_err(|e| format!("bad JSON: {e}\n{r}"))?;
        let line = j["error"]["line"].as_u64().unwrap_or(0) as usize;
        let path = j["error"]["path"].as_str().unwrap_or_default().to_string();
        // The tests' own reading of that line: text, not a comment or a header, and no `=`.
        let data = std::fs::read(f.host(&path)).unwrap_or_default();
        let text = String::from_utf8_lossy(&data);
        let l = text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or_default()
            .trim();
        let no_equals = line > 0
            && !l.is_empty()
            && !l.starts_with('#')
            && !l.starts_with(';')
            && !l.starts_with('[')
            && !l.contains('=');
        if no_equals
            && j["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("systemd cannot load docker.service"))
        {
            let d = before.differences(&f.snapshot(), true);
            if !d.is_empty() {
                return Err(format!("refused, yet the tree changed:\n{d}{r}"));
            }
            return Ok(Outcome::CannotLoad);
        }
    }
    if r.code != 0 {
        return Err(format!("fix failed\n{r}"));
    }
    if r.stderr.contains("panicked") {
        return Err(format!("panic\n{r}"));
    }
    let j: serde_json::Value =
        serde_json::from_str(&r.stdout).map_err(|e| format!("bad JSON: {e}\n{r}"))?;
    let u = j["units"]
        .as_array()
        .and_then(|us| us.iter().find(|u| u["unit"] == "docker.service"))
        .ok_or_else(|| format!("no docker.service in the report\n{r}"))?;
    let before_flags = u["mount_flags_before"]
        .as_str()
        .ok_or_else(|| format!("no mount_flags_before\n{r}"))?;
    if model != before_flags {
        return Err(format!(
            "dropfix reads MountFlags={before_flags:?}, the tests' reader {model:?}\n{r}"
        ));
    }
    let sets = !before_flags.is_empty();
    if !sets {
        if j["changed"] != false {
            return Err(format!("MountFlags unset but changed is not false\n{r}"));
        }
        let d = before.differences(&f.snapshot(), true);
        if !d.is_empty() {
            return Err(format!("nothing to do, yet the tree changed:\n{d}{r}"));
        }
        return Ok(Outcome::NothingToDo);
    }
    if u["mount_flags_after"] != "" {
        return Err(format!(
            "mount_flags_after is {} instead of \"\"\n{r}",
            u["mount_flags_after"]
        ));
    }
    if j["changed"] != true {
        return Err(format!("MountFlags was set but changed is not true\n{r}"));
    }
    let model_after = effective_mount_flags(f.path(), "docker.service", v);
    if !model_after.is_empty() {
        return Err(format!(
            "after the fix the tests' reader still finds MountFlags={model_after}\n{r}"
        ));
    }
    let c = f.run(&["fix", "--check", "--systemd-version", version]);
    if c.code != 0 {
        return Err(format!("a second fix --check does not exit 0\n{c}"));
    }
    let rv = f.run(&["revert"]);
    if rv.code != 0 {
        return Err(format!("revert failed\n{rv}"));
    }
    let d = before.differences(&f.snapshot(), false);
    if !d.is_empty() {
        return Err(format!("revert did not restore the tree:\n{d}{rv}"));
    }
    Ok(Outcome::Fixed)
}

fn report(failures: &[String], total: usize, outcomes: &[Outcome]) {
    assert!(
        failures.is_empty(),
        "{} of {total} corpus cases failed:\n\n{}",
        failures.len(),
        failures.join("\n==========\n")
    );
    let fixed = outcomes.iter().filter(|o| **o == Outcome::Fixed).count();
    eprintln!(
        "{total} corpus cases: {fixed} fixed, {} needed nothing",
        outcomes.len() - fixed
    );
}

#[test]
fn every_corpus_file_as_the_vendor_unit_ends_with_mountflags_unset_or_needs_no_change() {
    let files = all_files();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    let mut total = 0;
    for path in &files {
        let data = fs::read(path).expect("reading a corpus file");
        for v in VERSIONS {
            total += 1;
            let f = Fixture::new();
            f.file(VENDOR_DOCKER, &data);
            f.age();
            match check_root(&f, v) {
                Ok(o) => outcomes.push(o),
                Err(e) => failures.push(format!("{} (systemd {v}): {e}", path.display())),
            }
        }
    }
    report(&failures, total, &outcomes);
    // Not vacuous: the corpus has both units that set MountFlags and units that do not.
    let fixed = outcomes.iter().filter(|o| **o == Outcome::Fixed).count();
    assert!(fixed >= 40, "only {fixed} corpus cases set MountFlags");
    assert!(
        outcomes.len() - fixed >= 40,
        "only {} cases needed nothing",
        outcomes.len() - fixed
    );
}

#[test]
fn every_corpus_drop_in_next_to_a_slave_unit_ends_with_mountflags_unset() {
    let drop_ins: Vec<PathBuf> = all_files()
        .into_iter()
        .filter(|p| real_name(p).ends_with(".conf"))
        .collect();
    assert!(
        drop_ins.len() >= CORPUS_DROP_INS,
        "only {} *.conf in the corpus",
        drop_ins.len()
    );
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    let mut total = 0;
    for path in &drop_ins {
        let data = fs::read(path).expect("reading a corpus file");
        let name = real_name(path);
        for v in VERSIONS {
            total += 1;
            let f = Fixture::new();
            f.file(VENDOR_DOCKER, SLAVE_UNIT);
            f.file(&format!("{VENDOR}/docker.service.d/{name}"), &data);
            f.age();
            match check_root(&f, v) {
                Ok(o) => outcomes.push(o),
                Err(e) => failures.push(format!("{} as {name} (systemd {v}): {e}", path.display())),
            }
        }
    }
    report(&failures, total, &outcomes);
    // Next to a MountFlags=slave unit, every case needs the fix.
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Fixed),
        "{outcomes:?}"
    );
}

/// On plain corpus files (no continuation lines), dropfix's parser and rust-ini (escapes and
/// quotes off, as systemd's file syntax has none) read the same values for every key.
#[test]
fn parser_agrees_with_rust_ini_on_plain_corpus_files() {
    use std::collections::BTreeMap;
    let (mut files, mut compared, mut problems) = (0, 0, Vec::new());
    for p in all_files() {
        let Ok(text) = String::from_utf8(fs::read(&p).expect("reading a corpus file")) else {
            continue;
        };
        if text.lines().any(|l| l.trim_end().ends_with('\\')) || text.contains('\r') {
            continue; // continuations and CR endings: systemd's rules, not INI's
        }
        files += 1;
        let ours = dropfix::syntax::parse(text.as_bytes())
            .unwrap_or_else(|(_, e)| panic!("{}: {e}", p.display()));
        let opt = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: false,
            enabled_preserve_key_leading_whitespace: false,
        };
        let theirs = match ini::Ini::load_from_str_opt(&text, opt) {
            Ok(i) => i,
            Err(e) => {
                problems.push(format!("{}: rust-ini: {e}", p.display()));
                continue;
            }
        };
        let mut mine: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for a in &ours.assignments {
            mine.entry((a.section.clone(), a.key.clone()))
                .or_default()
                .push(a.value.clone());
        }
        for ((sec, key), values) in &mine {
            let other: Vec<String> = theirs
                .section_all(Some(sec.as_str()))
                .flat_map(|props| props.get_all(key).map(str::to_string).collect::<Vec<_>>())
                .collect();
            if &other != values {
                problems.push(format!(
                    "{}: [{sec}] {key}: dropfix {values:?}, rust-ini {other:?}",
                    p.display()
                ));
            }
            compared += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(files >= CORPUS_PLAIN, "only {files} plain corpus files");
    assert!(compared >= 300, "only {compared} keys compared");
}
