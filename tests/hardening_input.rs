//! Hostile and malformed input: systemd's own conf-parser cases as data, every file of systemd's
//! unit-file fuzz corpus (../shared/corpus/systemd-fuzz), generated junk (binary, NULs, huge
//! lines, deep continuations, CRLF mixes, BOMs, 10,000 drop-ins, FIFOs), and every input the
//! fuzzers kept (tests/fuzz_inputs/). Each gives a clean result or one clear error line with
//! exit 1, never a panic or a hang; a clean fix converges and reverts to the original bytes.

mod common;

#[path = "../fuzz/checks.rs"]
mod checks;

use common::*;
use dropfix::syntax;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;

fn expand(pieces: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces.as_array().expect("a list of pieces") {
        if let Some(seq) = p.get("seq") {
            let once = expand(seq);
            for _ in 0..p["times"].as_u64().unwrap() {
                out.extend_from_slice(&once);
            }
        } else {
            let text = p[0].as_str().unwrap().as_bytes();
            for _ in 0..p[1].as_u64().unwrap() {
                out.extend_from_slice(text);
            }
        }
    }
    out
}

#[test]
fn systemds_conf_parser_cases_give_systemds_results() {
    let path = top().join("tests/hardening_data/conf-parser-cases.json");
    let doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 19, "cases 1-18 and 4C");
    for c in cases {
        let id = c["id"].as_str().unwrap();
        let input = expand(&c["input"]);
        let got = syntax::parse(&input);
        match &c["expect"] {
            Value::Null => assert!(got.is_err(), "case {id} ({}): loaded", c["quirk"]),
            want => {
                let f = got.unwrap_or_else(|(_, e)| panic!("case {id}: {e}"));
                let value = f
                    .assignments
                    .iter()
                    .rfind(|a| a.section == "Section" && a.key == "setting1")
                    .map(|a| a.value.clone().into_bytes());
                assert_eq!(value, Some(expand(want)), "case {id} ({})", c["quirk"]);
            }
        }
        checks::parse(&input);
    }
}

/// Runs a fix on a fresh copy of `fixture`: exit 0 or one clear error line with exit 1
/// and the root untouched; after a clean fix, `--check` finds nothing left and `revert`
/// restores the original bytes. Returns the exit code.
fn fix_cleanly(what: &str, fixture: &Fixture, version: &str) -> i32 {
    let root = fixture.copy();
    let orig = root.snapshot();
    let preview = root.run(&["fix", "--dry-run", "--systemd-version", version]);
    let r = root.run(&["fix", "--systemd-version", version]);
    assert_eq!(
        preview.code, r.code,
        "{what} ({version}): the preview and the fix disagree\n{preview}\n{r}"
    );
    match r.code {
        0 => {
            let check = root.run(&["fix", "--check", "--systemd-version", version]);
            assert_eq!(
                check.code, 0,
                "{what} ({version}): a second run still has work\n{check}"
            );
            root.run(&["revert"]).expect_code(0);
            orig.assert_same(
                &root.snapshot(),
                false,
                &format!("{what} ({version}): revert"),
            );
        }
        1 => {
            r.expect_one_line_error();
            orig.assert_same(
                &root.snapshot(),
                true,
                &format!("{what} ({version}): a failed fix changed files"),
            );
        }
        c => panic!("{what} ({version}): exit {c}\n{r}"),
    }
    let scan = root.run(&["scan"]);
    assert!(matches!(scan.code, 0 | 1 | 3), "{what}: scan\n{scan}");
    r.code
}

/// The bytes as the vendor docker.service, and as a vendor drop-in beside a slave unit.
fn as_unit_and_dropin(what: &str, data: &[u8]) {
    let as_unit = Fixture::with_docker(data);
    as_unit.dir("/var/lib");
    let as_dropin = host_like();
    as_dropin.file(
        "/usr/lib/systemd/system/docker.service.d/50-fuzz.conf",
        data,
    );
    if data.len() > 256 << 10 {
        // Big inputs once each way: the full copy rewrites the unit, the drop-in merges it.
        fix_cleanly(&format!("{what} as docker.service"), &as_unit, "231");
        fix_cleanly(&format!("{what} as a drop-in"), &as_dropin, "252");
    } else {
        for v in ["252", "231"] {
            fix_cleanly(&format!("{what} as docker.service"), &as_unit, v);
            fix_cleanly(&format!("{what} as a drop-in"), &as_dropin, v);
        }
    }
    checks::parse(data);
}

fn corpus() -> Vec<PathBuf> {
    let dir = top().join("../shared/corpus/systemd-fuzz");
    assert!(dir.is_dir(), "corpus not found at {}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_file_of_systemds_unit_file_fuzz_corpus_fixes_cleanly_or_fails_clearly() {
    let files = corpus();
    // 31 unit files beside the corpus's two .md files.
    assert!(
        files.len() >= 31,
        "only {} files in the corpus",
        files.len()
    );
    for f in files {
        let data = fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        as_unit_and_dropin(&name, &data);
        // The fuzzer's first line names the unit type: also without it, as a plain unit file.
        if let Some(i) = data.iter().position(|&b| b == b'\n') {
            as_unit_and_dropin(&format!("{name} (type line dropped)"), &data[i + 1..]);
        }
        // And with MountFlags=slave appended to its [Service] section, when it has one.
        let mut slave = data.clone();
        slave.extend_from_slice(b"\n[Service]\nMountFlags=slave\n");
        as_unit_and_dropin(&format!("{name} + MountFlags=slave"), &slave);
    }
}

fn junk(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

#[test]
fn malformed_files_fix_cleanly_or_fail_with_one_clear_line() {
    let mut rng = Rng::from_env_or("DROPFIX_INPUT_SEED", 0x5eed_d20f);
    let slave = b"[Service]\nMountFlags=slave\n".to_vec();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary junk", junk(&mut rng, 65536)),
        ("junk then MountFlags", [junk(&mut rng, 4096), slave.clone()].concat()),
        ("MountFlags then junk", [slave.clone(), junk(&mut rng, 4096)].concat()),
        ("NUL line ends", b"[Service]\0MountFlags=slave\0Type=simple\0".to_vec()),
        ("1 MiB of NULs", vec![0; 1 << 20]),
        ("NUL inside a value", b"[Service]\nMountFlags=sla\0ve\n".to_vec()),
        ("empty", Vec::new()),
        ("whitespace only", b" \n\t\n\r\n".to_vec()),
        ("comments only", b"# MountFlags=slave\n; MountFlags=slave\n".to_vec()),
        ("a lone 0xFF", vec![0xff]),
        ("invalid UTF-8 in a comment", b"[Service]\n# \xff\xfe\nMountFlags=slave\n".to_vec()),
        ("invalid UTF-8 in a value", b"[Service]\nMountFlags=slave\nEnvironment=A=\xc3\n".to_vec()),
        ("invalid UTF-8 in a section name", b"[Serv\xffice]\nMountFlags=slave\n".to_vec()),
        ("CRLF", b"[Service]\r\nMountFlags=slave\r\nType=simple\r\n".to_vec()),
        ("CR only", b"[Service]\rMountFlags=slave\rType=simple\r".to_vec()),
        ("LF CR", b"[Service]\n\rMountFlags=slave\n\rType=simple\n\r".to_vec()),
        ("CRLF mix with continuation", b"[Service]\r\nExecStart=/bin/a \\\r\n  -x\nMountFlags=sla\\\rve\n\rType=simple\r\n".to_vec()),
        ("BOM", b"\xef\xbb\xbf[Service]\nMountFlags=slave\n".to_vec()),
        ("two BOMs", b"\xef\xbb\xbf\xef\xbb\xbf[Service]\nMountFlags=slave\n".to_vec()),
        ("BOM before the key", b"[Service]\n\xef\xbb\xbfMountFlags=slave\n".to_vec()),
        ("BOM then CRLF", b"\xef\xbb\xbf[Service]\r\nMountFlags=slave\r\n".to_vec()),
        ("unterminated section", b"[Service\nMountFlags=slave\n".to_vec()),
        ("section at end of file", b"MountFlags=slave\n[Service".to_vec()),
        ("control character in section", b"[Ser\x07vice]\nMountFlags=slave\n".to_vec()),
        ("no section", b"MountFlags=slave\n".to_vec()),
        ("key case", b"[Service]\nmountflags=slave\nMOUNTFLAGS=private\n".to_vec()),
        ("quoted value", b"[Service]\nMountFlags=\"slave\"\n".to_vec()),
        ("specifier value", b"[Service]\nMountFlags=%i\n".to_vec()),
        ("every value", b"[Service]\nMountFlags=slave\nMountFlags=shared\nMountFlags=private\nMountFlags=\nMountFlags=slave\n".to_vec()),
        (".include line", b"[Service]\n.include /etc/x.service\nMountFlags=slave\n".to_vec()),
    ];
    // Huge lines: one just under systemd's 1 MiB limit loads, one over it is refused.
    let mut under = slave.clone();
    under.extend_from_slice(b"Environment=A=");
    under.extend(std::iter::repeat_n(b'a', 1_000_000));
    under.push(b'\n');
    cases.push(("a line just under 1 MiB", under));
    let mut over = slave.clone();
    over.extend_from_slice(b"Environment=A=");
    over.extend(std::iter::repeat_n(b'a', 2 << 20));
    cases.push(("a 2 MiB line", over));
    // Deep continuations: 300,000 physical lines joined into one (linear, not quadratic).
    let mut deep = slave.clone();
    deep.extend_from_slice(b"Environment=A=");
    for _ in 0..300_000 {
        deep.extend_from_slice(b"x\\\n");
    }
    deep.extend_from_slice(b"end\n");
    cases.push(("300,000 continuation lines", deep));
    let mut deep_mf = b"[Service]\nMountFlags=".to_vec();
    for _ in 0..100_000 {
        deep_mf.extend_from_slice(b"\\\n#c\n");
    }
    deep_mf.extend_from_slice(b"slave\n");
    cases.push(("MountFlags continued through 100,000 comments", deep_mf));
    // Many lines, many assignments: a million empty lines, 100,000 MountFlags and
    // ReadOnlyPaths lines (each once cost a copy of all before it).
    cases.push((
        "a million empty lines",
        [slave.clone(), vec![b'\n'; 1_000_000]].concat(),
    ));
    cases.push((
        "100,000 MountFlags lines",
        [
            b"[Service]\n".to_vec(),
            b"MountFlags=slave\n".repeat(100_000),
        ]
        .concat(),
    ));
    cases.push((
        "100,000 ReadOnlyPaths lines",
        [slave.clone(), b"ReadOnlyPaths=/x\n".repeat(100_000)].concat(),
    ));
    for (what, data) in &cases {
        as_unit_and_dropin(what, data);
    }
}

#[test]
fn ten_thousand_drop_ins_are_read_in_systemds_order_and_the_last_one_counts() {
    let f = Fixture::with_docker("[Service]\nExecStart=/usr/bin/dockerd\n");
    f.dir("/var/lib");
    for i in 0..10_000 {
        let text = match i {
            9_999 => "[Service]\nMountFlags=slave\n".to_string(),
            i if i % 1000 == 0 => format!("[Service]\nEnvironment=N={i}\nMountFlags=private\n"),
            i => format!("[Service]\nEnvironment=N={i}\n"),
        };
        f.file(
            &format!("/usr/lib/systemd/system/docker.service.d/{i:05}.conf"),
            &text,
        );
    }
    assert_eq!(fix_cleanly("10,000 drop-ins", &f, "231"), 0);
    let r = f.copy().run(&[
        "--format",
        "json",
        "fix",
        "--dry-run",
        "--systemd-version",
        "252",
    ]);
    let j = r.json();
    assert_eq!(j["units"][0]["mount_flags_before"], "slave");
    assert_eq!(
        j["units"][0]["mount_flags_source"],
        "/usr/lib/systemd/system/docker.service.d/09999.conf:2"
    );
}

#[test]
fn a_fifo_planted_as_a_drop_in_or_unit_is_an_error_not_a_hang() {
    for at_path in [
        "/usr/lib/systemd/system/docker.service.d/50-fifo.conf",
        "/etc/systemd/system/docker.service",
    ] {
        let f = host_like();
        f.dir("/etc/systemd/system");
        let fifo = f.host(at_path);
        fs::create_dir_all(fifo.parent().unwrap()).unwrap();
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        let r = f.run(&["fix", "--systemd-version", "252"]);
        let err = r.expect_one_line_error();
        assert!(err.contains("not a regular file"), "{at_path}\n{r}");
    }
}

#[test]
fn every_input_the_fuzzers_kept_replays_cleanly() {
    let dir = top().join("tests/fuzz_inputs");
    // At least the inputs tests/fuzz_inputs/README.md lists for each target.
    for (target, check, at_least) in [
        ("parse", checks::parse as fn(&[u8]), 2),
        ("plan", checks::plan, 2),
    ] {
        let sub = dir.join(target);
        let rd = fs::read_dir(&sub).unwrap_or_else(|e| panic!("listing {}: {e}", sub.display()));
        let mut n = 0;
        for e in rd {
            let p = e.unwrap().path();
            let data = fs::read(&p).unwrap();
            check(&data);
            if target == "parse" {
                as_unit_and_dropin(&p.display().to_string(), &data);
            }
            n += 1;
        }
        assert!(n >= at_least, "only {n} kept inputs in {}", sub.display());
        eprintln!("{n} kept {target} inputs replayed");
    }
}
