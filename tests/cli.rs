//! CLI tests (issue 2): build fixture roots in temp dirs and run the built binary offline with
//! `--root`. They assert on what a user sees and relies on: exit status, file bytes and modes,
//! the whole tree before and after, stdout/stderr and the JSON shape.

mod common;

use common::*;
use indoc::indoc;
use serde_json::Value;

/// A vendor docker.service and nothing else, every mtime in the past.
fn slave_root() -> Fixture {
    let f = Fixture::new();
    f.file_mode(VENDOR_DOCKER, SLAVE_UNIT, 0o444);
    f.age();
    f
}

fn unit<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["units"]
        .as_array()
        .expect("units is an array")
        .iter()
        .find(|u| u["unit"] == name)
        .unwrap_or_else(|| panic!("no unit {name} in {j:#}"))
}

fn file_paths(u: &Value) -> Vec<String> {
    u["files"]
        .as_array()
        .expect("files is an array")
        .iter()
        .map(|f| f["path"].as_str().expect("path is a string").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Preview: --dry-run and --check
// ---------------------------------------------------------------------------------------------

#[test]
fn dry_run_writes_nothing_and_prints_a_unified_diff_and_the_effective_change() {
    for version in ["231", "252"] {
        let f = slave_root();
        let before = f.snapshot();
        let r = f.run(&["fix", "--dry-run", "--systemd-version", version]);
        r.expect_code(0);
        f.snapshot()
            .assert_same(&before, true, &format!("fix --dry-run on {version}"));
        let target = if version == "231" {
            "etc/systemd/system/docker.service"
        } else {
            "etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf"
        };
        assert!(
            r.stdout
                .contains(&format!("--- a/{target}\n+++ b/{target}\n")),
            "no a/ b/ diff header for {target}\n{r}"
        );
        assert!(r.stdout.contains("\n+[Service]"), "{r}");
        assert!(
            r.stdout
                .contains("docker.service: MountFlags: slave -> (unset)"),
            "{r}"
        );
        assert!(
            r.stdout.contains("daemon-reload"),
            "live actions missing\n{r}"
        );
        assert!(!r.stdout.contains('\x1b'), "colour on a pipe\n{r}");
    }
}

#[test]
fn colour_only_when_asked_for_on_a_pipe() {
    let f = slave_root();
    let plain = f.run(&["fix", "--dry-run", "--systemd-version", "252"]);
    assert!(!plain.stdout.contains('\x1b'), "{plain}");
    let never = f.run(&["fix", "--dry-run", "--color", "never"]);
    assert!(!never.stdout.contains('\x1b'), "{never}");
    let always = f.run(&[
        "fix",
        "--dry-run",
        "--systemd-version",
        "252",
        "--color",
        "always",
    ]);
    always.expect_code(0);
    assert!(always.stdout.contains("\x1b["), "{always}");
}

#[test]
fn dry_run_and_check_with_json_write_nothing_either() {
    let f = slave_root();
    let before = f.snapshot();
    for args in [
        &["fix", "--dry-run", "--format", "json"][..],
        &["fix", "--check", "--format", "json"][..],
        &["fix", "--check"][..],
        &["revert", "--dry-run"][..],
    ] {
        let r = f.run(args);
        assert!(r.code == 0 || r.code == 3, "{r}");
        f.snapshot().assert_same(&before, true, &args.join(" "));
    }
}

#[test]
fn check_exits_3_while_a_change_is_pending_and_0_after_fix() {
    for version in ["231", "252"] {
        let f = slave_root();
        let before = f.snapshot();
        let r = f.run(&["fix", "--check", "--systemd-version", version]);
        r.expect_code(3);
        assert!(r.stdout.contains("--- a/"), "check shows the diff\n{r}");
        f.snapshot().assert_same(&before, true, "fix --check");

        f.run(&["fix", "--systemd-version", version]).expect_code(0);
        let r = f.run(&["fix", "--check", "--systemd-version", version]);
        r.expect_code(0);
        assert!(r.stdout.contains("nothing to do"), "{r}");
    }
}

// ---------------------------------------------------------------------------------------------
// Apply: idempotence
// ---------------------------------------------------------------------------------------------

#[test]
fn second_fix_is_a_no_op_that_says_nothing_to_do_and_keeps_every_mtime() {
    for version in ["231", "252"] {
        let f = slave_root();
        f.run(&["fix", "--systemd-version", version]).expect_code(0);
        f.age();
        let after_first = f.snapshot();
        let r = f.run(&["fix", "--systemd-version", version]);
        r.expect_code(0);
        assert!(r.stdout.contains("nothing to do"), "{r}");
        assert!(!r.stdout.contains("--- a/"), "a diff on a no-op\n{r}");
        f.snapshot()
            .assert_same(&after_first, true, &format!("second fix on {version}"));

        let j = f
            .run(&["fix", "--format", "json", "--systemd-version", version])
            .expect_code(0)
            .json();
        assert_eq!(j["changed"], false, "{j:#}");
        assert_eq!(unit(&j, "docker.service")["mount_flags_before"], "");
    }
}

#[test]
fn written_files_are_0644_in_0755_directories_with_no_temp_files_left() {
    for version in ["231", "252"] {
        let f = slave_root();
        let before = f.snapshot();
        f.run(&["fix", "--systemd-version", version]).expect_code(0);
        let after = f.snapshot();
        for (p, n) in &after.0 {
            if before.0.contains_key(p) || p.starts_with("/var/lib/dropfix") {
                continue;
            }
            let name = p.rsplit('/').next().unwrap_or_default();
            assert!(!name.starts_with('.'), "temp file left behind: {p}");
            match n.kind {
                Kind::Dir => assert_eq!(n.mode, 0o755, "{p}"),
                Kind::File(_) => assert_eq!(n.mode, 0o644, "{p}"),
                _ => panic!("{p}: unexpected {n:?}"),
            }
            assert!(
                p.starts_with("/etc") || p == "/var" || p == "/var/lib",
                "dropfix wrote outside /etc and its state: {p}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Revert
// ---------------------------------------------------------------------------------------------

/// fix, then revert: every byte, mode, symlink target and directory as before; nothing left
/// under /var/lib/dropfix and no empty directory left behind.
fn assert_fix_then_revert_restores(f: &Fixture, version: &str) -> Run {
    let before = f.snapshot();
    let fix = f.run(&["fix", "--systemd-version", version]);
    fix.expect_code(0);
    assert_ne!(
        f.snapshot().differences(&before, false),
        "",
        "the fix changed nothing\n{fix}"
    );
    let r = f.run(&["revert"]);
    r.expect_code(0);
    let after = f.snapshot();
    before.assert_same(
        &after,
        false,
        &format!("revert after fix on {version}\n{r}"),
    );
    assert_eq!(before.dirs(), after.dirs());
    assert!(!f.exists("/var/lib/dropfix"), "state left behind");
    r
}

#[test]
fn revert_restores_the_exact_tree_after_a_drop_in_fix() {
    let f = slave_root();
    let r = assert_fix_then_revert_restores(&f, "252");
    assert!(r.stdout.contains("reverted"), "{r}");
    assert!(!f.exists("/etc"), "an empty /etc left behind");
    assert!(!f.exists("/var"), "an empty /var left behind");
}

#[test]
fn revert_restores_the_exact_tree_after_a_full_copy() {
    let f = slave_root();
    assert_fix_then_revert_restores(&f, "231");
}

#[test]
fn revert_keeps_directories_that_existed_before_the_fix() {
    let f = slave_root();
    f.file_mode("/etc/systemd/system/multi-user.target.wants/x", "", 0o600);
    f.dir("/etc/systemd/system/docker.service.d");
    f.file("/var/lib/other/data", "keep me");
    f.dir("/var/lib/dropfix-not-ours");
    for v in ["231", "252"] {
        assert_fix_then_revert_restores(&f, v);
    }
}

#[test]
fn revert_restores_an_existing_etc_unit_file_that_the_full_copy_replaced() {
    let f = slave_root();
    // An administrator's own copy, with an unusual mode, that still sets MountFlags.
    let admin = SLAVE_UNIT.replace("Type=notify", "Type=notify\nEnvironment=ADMIN=1");
    f.file_mode("/etc/systemd/system/docker.service", &admin, 0o640);
    let before = f.snapshot();
    let fix = f
        .run(&["fix", "--format", "json", "--systemd-version", "231"])
        .expect_code(0)
        .json();
    let u = unit(&fix, "docker.service");
    assert_eq!(u["files"][0]["path"], "/etc/systemd/system/docker.service");
    assert_eq!(u["files"][0]["action"], "replace");
    let (_, body) = split_generated(&f.read("/etc/systemd/system/docker.service"));
    assert_eq!(
        lossy(&body),
        lossy(&commented_out(admin.as_bytes(), "docker.service"))
    );

    f.run(&["revert"]).expect_code(0);
    before.assert_same(&f.snapshot(), false, "revert of a replaced /etc file");
}

#[test]
fn revert_restores_an_etc_symlink_that_the_full_copy_replaced() {
    let f = slave_root();
    f.symlink("/etc/systemd/system/docker.service", VENDOR_DOCKER);
    f.age();
    let before = f.snapshot();
    f.run(&["fix", "--systemd-version", "231"]).expect_code(0);
    let etc = std::fs::symlink_metadata(f.host("/etc/systemd/system/docker.service")).unwrap();
    assert!(etc.is_file(), "the symlink was not replaced by a file");
    assert_eq!(
        f.read(VENDOR_DOCKER),
        SLAVE_UNIT.as_bytes(),
        "wrote through the symlink"
    );
    f.run(&["revert"]).expect_code(0);
    before.assert_same(&f.snapshot(), false, "revert of a replaced /etc symlink");
}

#[test]
fn revert_restores_a_linked_unit_symlink_that_the_full_copy_replaced() {
    // `systemctl link /opt/docker/docker.service`: a symlink out of the search path.
    let f = Fixture::new();
    f.file("/opt/docker/docker.service", SLAVE_UNIT);
    f.symlink(
        "/etc/systemd/system/docker.service",
        "/opt/docker/docker.service",
    );
    let before = f.snapshot();
    let j = f
        .run(&["fix", "--format", "json", "--systemd-version", "231"])
        .expect_code(0)
        .json();
    assert_eq!(unit(&j, "docker.service")["mount_flags_before"], "slave");
    let (_, body) = split_generated(&f.read("/etc/systemd/system/docker.service"));
    assert_eq!(
        lossy(&body),
        lossy(&commented_out(SLAVE_UNIT.as_bytes(), "docker.service"))
    );
    assert_eq!(f.read("/opt/docker/docker.service"), SLAVE_UNIT.as_bytes());
    f.run(&["revert"]).expect_code(0);
    before.assert_same(&f.snapshot(), false, "revert of a replaced linked unit");
}

#[test]
fn revert_restores_an_etc_drop_in_that_was_neutralised_in_place() {
    let f = slave_root();
    let admin = "[Service]\nMountFlags=private\nEnvironment=X=1\n";
    f.file_mode(
        "/etc/systemd/system/docker.service.d/50-admin.conf",
        admin,
        0o600,
    );
    for v in ["231", "252"] {
        assert_fix_then_revert_restores(&f, v);
    }
}

#[test]
fn revert_of_one_unit_keeps_the_others_fix_and_a_full_revert_then_restores_the_tree() {
    let f = slave_root();
    f.file(
        "/usr/lib/systemd/system/early-docker.service",
        SLAVE_UNIT.replace("Description=Docker", "Description=Early Docker"),
    );
    let before = f.snapshot();
    f.run(&["fix", "--systemd-version", "252"]).expect_code(0);
    let early = "/etc/systemd/system/early-docker.service.d/zz-dropfix-mountflags.conf";
    assert!(f.exists(early) && f.exists(OWN_DROPIN));

    f.run(&["revert", "early-docker"]).expect_code(0);
    assert!(!f.exists("/etc/systemd/system/early-docker.service.d"));
    assert!(
        f.exists(OWN_DROPIN),
        "reverting early-docker undid docker's fix"
    );
    f.run(&["fix", "--check", "--systemd-version", "252", "docker"])
        .expect_code(0);

    f.run(&["revert"]).expect_code(0);
    before.assert_same(&f.snapshot(), false, "revert after a partial revert");
}

#[test]
fn fixes_for_two_systemd_versions_in_a_row_are_reverted_together() {
    // The image is fixed for 252, then planned again for 231, where the empty MountFlags= of
    // the first fix is ignored: a full copy is added. One revert undoes both.
    let f = slave_root();
    let before = f.snapshot();
    f.run(&["fix", "--systemd-version", "252"]).expect_code(0);
    f.run(&["fix", "--check", "--systemd-version", "231"])
        .expect_code(3);
    f.run(&["fix", "--systemd-version", "231"]).expect_code(0);
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 231), "");
    f.run(&["revert"]).expect_code(0);
    before.assert_same(&f.snapshot(), false, "revert after two fixes");
    assert!(!f.exists("/var/lib/dropfix"));
}

#[test]
fn revert_leaves_a_generated_file_changed_since_alone_and_says_so() {
    let f = slave_root();
    f.run(&["fix", "--systemd-version", "252"]).expect_code(0);
    f.file(OWN_DROPIN, "[Service]\nMountFlags=\nEnvironment=MINE=1\n");
    let r = f.run(&["revert"]);
    r.expect_code(0);
    assert_eq!(
        f.read(OWN_DROPIN),
        b"[Service]\nMountFlags=\nEnvironment=MINE=1\n",
        "revert removed a file dropfix no longer owns"
    );
    assert!(r.stdout.contains(OWN_DROPIN), "{r}");
    assert!(r.stdout.contains("left alone"), "{r}");
}

#[test]
fn revert_with_nothing_to_undo_exits_0_and_writes_nothing() {
    let f = slave_root();
    let before = f.snapshot();
    let r = f.run(&["revert"]);
    r.expect_code(0);
    assert!(r.stdout.contains("nothing to revert"), "{r}");
    f.snapshot()
        .assert_same(&before, true, "revert with no state");
}

// ---------------------------------------------------------------------------------------------
// Strategy by systemd version: the bytes of what is written
// ---------------------------------------------------------------------------------------------

#[test]
fn systemd_231_gets_a_full_copy_identical_to_the_vendor_file_but_the_commented_mountflags_line() {
    let f = slave_root();
    let r = f.run(&["fix", "--format", "json", "--systemd-version", "231"]);
    let j = r.expect_code(0).json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["strategy"], "full-copy");
    assert_eq!(file_paths(u), ["/etc/systemd/system/docker.service"]);
    let copy = f.read("/etc/systemd/system/docker.service");
    let (_, body) = split_generated(&copy);
    assert_eq!(
        lossy(&body),
        lossy(&commented_out(SLAVE_UNIT.as_bytes(), "docker.service"))
    );
    assert!(!f.exists("/etc/systemd/system/docker.service.d"));
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 231), "");
}

#[test]
fn full_copy_keeps_crlf_line_endings_and_a_missing_final_newline() {
    let vendor: &[u8] =
        b"[Unit]\r\nDescription=crlf\r\n\r\n[Service]\r\nMountFlags=slave\r\nExecStart=/usr/bin/dockerd -H fd://";
    let f = Fixture::new();
    f.file(VENDOR_DOCKER, vendor);
    f.run(&["fix", "--systemd-version", "231"]).expect_code(0);
    let copy = f.read("/etc/systemd/system/docker.service");
    let (_, body) = split_generated(&copy);
    let reason = REASON_TEMPLATE
        .trim_end()
        .replace("{unit}", "docker.service");
    let mut want = b"[Unit]\r\nDescription=crlf\r\n\r\n[Service]\r\n".to_vec();
    want.extend_from_slice(reason.as_bytes());
    want.extend_from_slice(b"\r\n#MountFlags=slave\r\nExecStart=/usr/bin/dockerd -H fd://");
    assert_eq!(lossy(&body), lossy(&want));
    assert!(!copy.ends_with(b"\n"), "a final newline was added");
}

#[test]
fn full_copy_as_last_line_without_newline_comments_out_mountflags() {
    let vendor: &[u8] = b"[Service]\nExecStart=/usr/bin/dockerd\nMountFlags=slave";
    let f = Fixture::new();
    f.file(VENDOR_DOCKER, vendor);
    f.run(&["fix", "--systemd-version", "231"]).expect_code(0);
    let (_, body) = split_generated(&f.read("/etc/systemd/system/docker.service"));
    assert_eq!(
        lossy(&body),
        lossy(&commented_out(vendor, "docker.service"))
    );
    assert!(body.ends_with(b"\n#MountFlags=slave"), "{}", lossy(&body));
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 231), "");
}

#[test]
fn systemd_252_gets_only_a_late_drop_in_with_an_empty_mountflags() {
    let f = slave_root();
    let j = f
        .run(&["fix", "--format", "json", "--systemd-version", "252"])
        .expect_code(0)
        .json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["strategy"], "drop-in");
    assert_eq!(file_paths(u), [OWN_DROPIN]);
    assert_eq!(u["files"][0]["action"], "create");
    let (_, body) = split_generated(&f.read(OWN_DROPIN));
    assert_eq!(lossy(&body), "[Service]\nMountFlags=\n");
    assert!(!f.exists("/etc/systemd/system/docker.service"));
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 252), "");
}

#[test]
fn systemd_228_and_233_get_a_drop_in_and_229_to_232_a_full_copy() {
    for (v, want) in [
        ("228", "drop-in"),
        ("229", "full-copy"),
        ("232", "full-copy"),
        ("233", "drop-in"),
    ] {
        let f = slave_root();
        let j = f
            .run(&[
                "fix",
                "--dry-run",
                "--format",
                "json",
                "--systemd-version",
                v,
            ])
            .expect_code(0)
            .json();
        assert_eq!(unit(&j, "docker.service")["strategy"], want, "systemd {v}");
    }
}

#[test]
fn forcing_a_drop_in_on_231_warns_that_it_cannot_work() {
    let f = slave_root();
    let j = f
        .run(&[
            "fix",
            "--dry-run",
            "--format",
            "json",
            "--systemd-version",
            "231",
            "--strategy",
            "drop-in",
        ])
        .expect_code(0)
        .json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["strategy"], "drop-in");
    let w = u["warnings"].to_string();
    assert!(w.contains("cannot work") && w.contains("231"), "{j:#}");
}

#[test]
fn forcing_a_full_copy_on_252_is_honoured_without_a_warning() {
    let f = slave_root();
    let j = f
        .run(&[
            "fix",
            "--format",
            "json",
            "--systemd-version",
            "252",
            "--strategy",
            "full-copy",
        ])
        .expect_code(0)
        .json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["strategy"], "full-copy");
    assert_eq!(u["warnings"], serde_json::json!([]));
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 252), "");
}

// ---------------------------------------------------------------------------------------------
// Version detection from the root's files
// ---------------------------------------------------------------------------------------------

#[test]
fn version_231_is_detected_from_the_roots_systemd_binary_and_gives_a_full_copy() {
    let f = slave_root();
    f.file(
        "/usr/lib/systemd/systemd",
        b"\x7fELF\x02\x01\x01\0\0\0systemd 231 running in %ssystem mode. (+PAM +AUDIT)\0more\0",
    );
    let j = f.run(&["fix", "--format", "json"]).expect_code(0).json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["systemd_version"], 231, "{j:#}");
    assert_eq!(u["strategy"], "full-copy");
    assert_eq!(file_paths(u), ["/etc/systemd/system/docker.service"]);
    assert!(
        u["notes"].to_string().contains("/usr/lib/systemd/systemd"),
        "the note does not say where the version came from: {j:#}"
    );
}

#[test]
fn version_252_is_detected_from_the_roots_systemd_binary_and_gives_a_drop_in() {
    let f = slave_root();
    f.file(
        "/usr/lib/systemd/systemd",
        "systemd 252.39-1~deb12u2 running in %ssystem mode (+PAM)",
    );
    let j = f.run(&["fix", "--format", "json"]).expect_code(0).json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["systemd_version"], 252, "{j:#}");
    assert_eq!(u["strategy"], "drop-in");
}

#[test]
fn unknown_version_uses_a_full_copy_and_says_why() {
    let f = slave_root();
    let r = f.run(&["fix", "--format", "json", "--dry-run"]);
    let j = r.expect_code(0).json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["systemd_version"], Value::Null);
    assert_eq!(u["strategy"], "full-copy");
    let notes = u["notes"].to_string();
    assert!(
        notes.contains("unknown") && notes.contains("every version"),
        "no note saying why: {j:#}"
    );
    let text = f.run(&["fix", "--dry-run"]);
    assert!(text.stdout.contains("unknown"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Vendor drop-ins that set MountFlags
// ---------------------------------------------------------------------------------------------

const SLAVE_DROPIN: &str = indoc! {"
    # vendor: keep docker's mounts to itself
    [Service]
    MountFlags=slave
    Environment=VENDOR=1
"};

#[test]
fn vendor_drop_in_setting_slave_is_neutralised_by_a_same_named_etc_file_on_231() {
    let f = Fixture::new();
    f.file(VENDOR_DOCKER, "[Service]\nExecStart=/usr/bin/dockerd\n");
    let vendor_dropin = "/usr/lib/systemd/system/docker.service.d/99-slave.conf";
    f.file(vendor_dropin, SLAVE_DROPIN);
    let j = f
        .run(&["fix", "--format", "json", "--systemd-version", "231"])
        .expect_code(0)
        .json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["mount_flags_before"], "slave");
    assert_eq!(u["mount_flags_after"], "");
    let hider = "/etc/systemd/system/docker.service.d/99-slave.conf";
    assert!(file_paths(u).contains(&hider.to_string()), "{j:#}");
    let (_, body) = split_generated(&f.read(hider));
    assert_eq!(
        lossy(&body),
        lossy(&commented_out(SLAVE_DROPIN.as_bytes(), "docker.service"))
    );
    assert_eq!(f.read(vendor_dropin), SLAVE_DROPIN.as_bytes());
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 231), "");
    f.run(&["fix", "--check", "--systemd-version", "231"])
        .expect_code(0);
}

#[test]
fn vendor_drop_in_setting_slave_is_overridden_by_a_later_drop_in_on_252() {
    // On 252 an empty MountFlags= resets, and dropfix's drop-in sorts after 99-slave.conf,
    // so the vendor drop-in is applied first and then reset (issue 2: only drop-ins that
    // would set MountFlags again *after* ours need neutralising).
    let f = Fixture::new();
    f.file(VENDOR_DOCKER, SLAVE_UNIT);
    let vendor_dropin = "/usr/lib/systemd/system/docker.service.d/99-slave.conf";
    f.file(vendor_dropin, SLAVE_DROPIN);
    let j = f
        .run(&["fix", "--format", "json", "--systemd-version", "252"])
        .expect_code(0)
        .json();
    let u = unit(&j, "docker.service");
    assert_eq!(u["strategy"], "drop-in");
    assert_eq!(u["mount_flags_after"], "");
    let ours = file_paths(u)
        .into_iter()
        .find(|p| p.contains("dropfix"))
        .unwrap_or_else(|| panic!("no dropfix drop-in: {j:#}"));
    assert!(
        ours.rsplit('/').next().unwrap() > "99-slave.conf",
        "{ours} does not sort after 99-slave.conf"
    );
    assert_eq!(f.read(vendor_dropin), SLAVE_DROPIN.as_bytes());
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 252), "");
    f.run(&["fix", "--check", "--systemd-version", "252"])
        .expect_code(0);
}

#[test]
fn drop_in_named_zzzz_sorting_after_the_default_name_is_still_overridden() {
    for v in [231, 252] {
        let f = Fixture::new();
        f.file(VENDOR_DOCKER, SLAVE_UNIT);
        let late = "/usr/lib/systemd/system/docker.service.d/zzzz.conf";
        f.file(late, "[Service]\nMountFlags=private\n");
        let vs = v.to_string();
        let j = f
            .run(&["fix", "--format", "json", "--systemd-version", &vs])
            .expect_code(0)
            .json();
        let u = unit(&j, "docker.service");
        assert_eq!(u["mount_flags_before"], "private");
        assert_eq!(u["mount_flags_after"], "", "{j:#}");
        assert_eq!(
            effective_mount_flags(f.path(), "docker.service", v),
            "",
            "{j:#}"
        );
        if v == 231 {
            let hider = "/etc/systemd/system/docker.service.d/zzzz.conf";
            let (_, body) = split_generated(&f.read(hider));
            assert_eq!(
                lossy(&body),
                lossy(&commented_out(
                    b"[Service]\nMountFlags=private\n",
                    "docker.service"
                ))
            );
        }
        f.run(&["fix", "--check", "--systemd-version", &vs])
            .expect_code(0);
        f.run(&["revert"]).expect_code(0);
        assert!(!f.exists("/etc"), "revert left /etc behind");
    }
}

#[test]
fn drop_in_whose_name_no_z_prefix_can_sort_after_is_neutralised_not_a_hang() {
    // '~' sorts after 'z': no run of z's in front of dropfix's name can ever come later.
    for v in [231, 252] {
        let f = Fixture::new();
        f.file(VENDOR_DOCKER, SLAVE_UNIT);
        let late = "/usr/lib/systemd/system/docker.service.d/~local.conf";
        f.file(late, "[Service]\nMountFlags=slave\nEnvironment=L=1\n");
        f.file(
            "/usr/lib/systemd/system/docker.service.d/\u{e9}t\u{e9}.conf",
            "[Service]\nEnvironment=E=1\n",
        );
        let vs = v.to_string();
        let r = f.run(&["fix", "--format", "json", "--systemd-version", &vs]);
        let j = r.expect_code(0).json();
        assert_eq!(unit(&j, "docker.service")["mount_flags_after"], "", "{j:#}");
        assert!(
            f.exists("/etc/systemd/system/docker.service.d/~local.conf"),
            "~local.conf not neutralised: {j:#}"
        );
        assert_eq!(effective_mount_flags(f.path(), "docker.service", v), "");
        f.run(&["fix", "--check", "--systemd-version", &vs])
            .expect_code(0);
    }
}

#[test]
fn masked_vendor_drop_in_does_not_count() {
    let f = Fixture::new();
    f.file(VENDOR_DOCKER, "[Service]\nExecStart=/usr/bin/dockerd\n");
    f.file(
        "/usr/lib/systemd/system/docker.service.d/99-slave.conf",
        SLAVE_DROPIN,
    );
    f.symlink(
        "/etc/systemd/system/docker.service.d/99-slave.conf",
        "/dev/null",
    );
    f.age();
    let before = f.snapshot();
    let r = f.run(&["fix", "--systemd-version", "231"]);
    r.expect_code(0);
    assert!(r.stdout.contains("nothing to do"), "{r}");
    f.snapshot()
        .assert_same(&before, true, "fix with a masked drop-in");
}

// ---------------------------------------------------------------------------------------------
// Masked units
// ---------------------------------------------------------------------------------------------

fn assert_masked_refused(f: &Fixture) {
    f.age();
    let before = f.snapshot();
    for v in ["231", "252"] {
        let r = f.run(&["fix", "--systemd-version", v]);
        let line = r.expect_one_line_error();
        assert!(line.contains("docker.service"), "{r}");
        assert!(line.contains("masked"), "{r}");
        assert_eq!(r.stdout, "", "{r}");
        f.snapshot()
            .assert_same(&before, true, "fix of a masked unit");
    }
}

#[test]
fn unit_masked_by_a_dev_null_symlink_in_etc_is_refused() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    f.symlink("/etc/systemd/system/docker.service", "/dev/null");
    assert_masked_refused(&f);
}

#[test]
fn unit_masked_by_an_empty_file_in_etc_is_refused() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    f.file("/etc/systemd/system/docker.service", "");
    assert_masked_refused(&f);
}

#[test]
fn masked_early_docker_is_left_alone_when_not_named_and_docker_is_still_fixed() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    f.file(
        "/usr/lib/systemd/system/early-docker.service",
        SLAVE_UNIT.replace("Description=Docker", "Description=Early Docker"),
    );
    f.symlink("/etc/systemd/system/early-docker.service", "/dev/null");
    let r = f.run(&["fix", "--systemd-version", "252", "--format", "json"]);
    r.expect_code(0);
    let j = r.json();
    let units: Vec<&str> = j["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units, ["docker.service"]);
    assert!(f.exists("/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf"));
    // Named explicitly, the masked unit is refused.
    f.run(&["fix", "--systemd-version", "252", "early-docker"])
        .expect_one_line_error();
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 1, one line naming what is wrong, no panic, nothing written
// ---------------------------------------------------------------------------------------------

fn assert_refused(f: &Fixture, args: &[&str], must_name: &[&str]) -> String {
    f.age();
    let before = f.snapshot();
    let r = f.run(args);
    let line = r.expect_one_line_error();
    for n in must_name {
        assert!(line.contains(n), "the error does not name {n:?}\n{r}");
    }
    f.snapshot()
        .assert_same(&before, true, &format!("refused {}", args.join(" ")));
    line
}

#[test]
fn invalid_unit_names_are_refused_naming_the_argument() {
    let long = format!("{}.service", "a".repeat(250));
    for bad in [
        "bad name",
        "dock$er",
        "a/b.service",
        "../docker.service",
        long.as_str(),
        "@docker.service",
        "docker@.service",
        "",
    ] {
        let f = Fixture::with_docker(SLAVE_UNIT);
        let line = assert_refused(&f, &["fix", "--systemd-version", "252", bad], &[bad]);
        assert!(line.contains("invalid unit name"), "{line}");
    }
}

#[test]
fn unit_name_with_an_unknown_suffix_means_service_like_systemctl_and_is_not_found() {
    // systemctl mangles "docker.bogus" to "docker.bogus.service"; there is no such unit.
    let f = Fixture::with_docker(SLAVE_UNIT);
    let line = assert_refused(&f, &["fix", "docker.bogus"], &["docker.bogus"]);
    assert!(line.contains("not found"), "{line}");
}

#[test]
fn unit_not_found_is_refused_naming_it() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    assert_refused(
        &f,
        &["fix", "containerd"],
        &["containerd.service", "not found"],
    );
    let empty = Fixture::new();
    assert_refused(&empty, &["fix"], &["docker.service", "not found"]);
}

#[test]
fn fragment_with_an_invalid_section_header_is_refused_naming_file_and_line() {
    let f = Fixture::with_docker("[Unit]\nDescription=x\n[Service\nMountFlags=slave\n");
    assert_refused(
        &f,
        &["fix", "--systemd-version", "252"],
        &["/usr/lib/systemd/system/docker.service:3"],
    );
}

#[test]
fn fragment_with_invalid_utf8_cannot_be_loaded_from_systemd_239_but_is_read_before() {
    let f = Fixture::with_docker(
        b"[Service]\nExecStart=/usr/bin/dockerd\nMountFlags=slave\nEnvironment=A=\xff\xfe\n"
            .as_slice(),
    );
    // v239+: the line is fatal for the file, so systemd cannot load the unit at all.
    let line = assert_refused(
        &f,
        &["fix", "--systemd-version", "252"],
        &[
            "systemd cannot load docker.service",
            "/usr/lib/systemd/system/docker.service:4",
            "UTF-8",
        ],
    );
    assert!(
        line.starts_with("dropfix: error: systemd cannot load"),
        "{line}"
    );
    let j = f
        .run(&["fix", "--systemd-version", "252", "--format", "json"])
        .json();
    assert_eq!(j["error"]["unit"], "docker.service", "{j}");
    assert_eq!(j["error"]["path"], "/usr/lib/systemd/system/docker.service");
    assert_eq!(j["error"]["line"], 4);
    // 231 loads it (only some value parsers check UTF-8): the full copy keeps those bytes
    // verbatim, and only the MountFlags line changes.
    f.run(&["fix", "--systemd-version", "231"]).expect_code(0);
    let copy = f.read("/etc/systemd/system/docker.service");
    assert!(
        copy.windows(4).any(|w| w == b"A=\xff\xfe"),
        "{}",
        lossy(&copy)
    );
    assert!(!copy.windows(12).any(|w| w == b"\nMountFlags="));
}

#[test]
fn invalid_utf8_only_in_a_comment_is_read_like_systemd_and_copied_verbatim() {
    // systemd skips comment lines unchecked, so the unit loads; a drop-in fixes it on 252, and
    // a full copy on 231 carries the comment's bytes as they are.
    let f = Fixture::with_docker(
        b"[Service]\nExecStart=/usr/bin/dockerd\n# caf\xe9\nMountFlags=slave\n".as_slice(),
    );
    f.run(&["fix", "--dry-run", "--systemd-version", "252"])
        .expect_code(0);
    f.run(&["fix", "--systemd-version", "231"]).expect_code(0);
    let copy = f.read("/etc/systemd/system/docker.service");
    assert!(
        copy.windows(6).any(|w| w == b"# caf\xe9"),
        "{}",
        lossy(&copy)
    );
    f.run(&["revert"]).expect_code(0);
    assert!(!f.exists("/etc/systemd/system/docker.service"));
}

#[test]
fn a_drop_in_systemd_reads_only_in_part_is_applied_up_to_its_bad_line_and_said() {
    // systemd applies the lines before the bad one, skips the rest of that drop-in, applies
    // every other drop-in, and the unit loads: dropfix reads it the same way and says so.
    for (bad, reason) in [
        (
            b"[Service]\nEnvironment=X=caf\xe9\nMountFlags=private\n".as_slice(),
            "UTF-8",
        ),
        (
            b"[Service]\nEnvironment=Y=1\n[Service\nMountFlags=private\n".as_slice(),
            "section header",
        ),
    ] {
        let f = Fixture::with_docker(SLAVE_UNIT);
        f.file("/usr/lib/systemd/system/docker.service.d/10-bad.conf", bad);
        let r = f.run(&["fix", "--systemd-version", "252", "--format", "json"]);
        r.expect_code(0);
        let j = r.json();
        let w = j["units"][0]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            w.contains("/usr/lib/systemd/system/docker.service.d/10-bad.conf:")
                && w.contains(reason),
            "{j}"
        );
        // The MountFlags=private after the bad line never applies: the vendor's slave does.
        assert_eq!(j["units"][0]["mount_flags_before"], "slave", "{j}");
        assert!(f.exists("/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf"));
        let show = f.run(&["show", "docker", "--format", "json"]).json();
        let d = show["dropins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["path"] == "/usr/lib/systemd/system/docker.service.d/10-bad.conf")
            .unwrap()
            .clone();
        assert_eq!(d["status"], "partial", "{show}");
        assert!(!show["warnings"].as_array().unwrap().is_empty());
        // doctor offline: a problem, never healthy.
        let r = f.run(&["doctor", "--format", "json"]);
        r.expect_code(3);
        let dj = r.json();
        let ids: Vec<&str> = dj["units"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["id"].as_str())
            .collect();
        assert!(ids.contains(&"partial-dropin"), "{dj}");
    }
}

#[test]
fn a_fragment_systemd_cannot_load_is_a_doctor_problem_never_healthy() {
    let f = Fixture::with_docker("[Service\nExecStart=/usr/bin/dockerd\nMountFlags=slave\n");
    let r = f.run(&["doctor", "--format", "json"]);
    r.expect_code(3);
    let j = r.json();
    assert_eq!(j["healthy"], false);
    let uf = j["units"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "unit-files")
        .cloned()
        .unwrap_or_else(|| panic!("{j}"));
    assert_eq!(uf["status"], "problem");
    assert!(
        uf["summary"]
            .as_str()
            .unwrap()
            .contains("systemd cannot load docker.service"),
        "{uf}"
    );
}

#[test]
fn drop_in_with_a_non_utf8_name_is_refused_not_silently_ignored() {
    // systemd applies "\xff.conf" like any other drop-in; ignoring it would report "unset".
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::with_docker("[Service]\nExecStart=/usr/bin/dockerd\n");
    f.dir("/usr/lib/systemd/system/docker.service.d");
    let name = std::ffi::OsStr::from_bytes(b"\xff.conf");
    std::fs::write(
        f.host("/usr/lib/systemd/system/docker.service.d")
            .join(name),
        "[Service]\nMountFlags=slave\n",
    )
    .unwrap();
    assert_refused(
        &f,
        &["fix", "--systemd-version", "252"],
        &["/usr/lib/systemd/system/docker.service.d", "not UTF-8"],
    );
}

#[test]
fn line_over_one_mebibyte_is_refused_naming_file_and_line() {
    let mut unit = b"[Service]\nMountFlags=slave\nEnvironment=".to_vec();
    unit.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 1));
    unit.extend_from_slice(b"\nExecStart=/usr/bin/dockerd\n");
    let f = Fixture::with_docker(unit.as_slice());
    assert_refused(
        &f,
        &["fix", "--systemd-version", "252"],
        &["/usr/lib/systemd/system/docker.service:3"],
    );
}

#[test]
fn root_that_is_missing_or_not_a_directory_is_refused_naming_it() {
    let f = Fixture::new();
    f.file("/plain", "x");
    for bad in ["/does/not/exist", &f.host("/plain").display().to_string()] {
        let r = run(&["fix", "--dry-run", "--root", bad]);
        let line = r.expect_one_line_error();
        assert!(line.contains(&format!("--root {bad}")), "{r}");
    }
}

#[test]
fn directory_symlink_climbing_above_the_root_is_refused() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    f.dir("/etc");
    f.symlink("/etc/systemd", "../../../../../../../../../../../tmp");
    assert_refused(
        &f,
        &["fix", "--systemd-version", "252"],
        &["climbs above the root"],
    );
}

#[test]
fn unit_symlink_climbing_above_the_root_is_refused() {
    let f = Fixture::new();
    f.symlink(
        VENDOR_DOCKER,
        "../../../../../../../../../../../../etc/hostname",
    );
    assert_refused(
        &f,
        &["fix", "--systemd-version", "252"],
        &[VENDOR_DOCKER, "climbs above the root"],
    );
}

#[test]
fn drop_in_dir_symlinked_out_of_the_root_is_never_written_through() {
    // An absolute symlink is taken inside the root (as systemd does under --root); the
    // writer must still not follow it out to the host.
    let outside = tempfile::tempdir().unwrap();
    let f = Fixture::with_docker(SLAVE_UNIT);
    f.dir("/etc/systemd/system");
    f.symlink(
        "/etc/systemd/system/docker.service.d",
        outside.path().to_str().unwrap(),
    );
    let r = f.run(&["fix", "--systemd-version", "252"]);
    r.expect_one_line_error();
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "wrote outside the root\n{r}"
    );
    assert!(!f.exists("/var/lib/dropfix"), "state left behind\n{r}");
}

#[test]
fn read_only_root_is_refused_with_one_line_and_nothing_written() {
    let f = slave_root();
    let root = f.path().to_str().unwrap().to_string();
    // A read-only bind mount of the root in a private mount namespace (needs root).
    let script = format!(
        "mount --bind '{root}' '{root}' && mount -o remount,bind,ro '{root}' || exit 99; exec '{bin}' fix --systemd-version 252 --root '{root}'",
        bin = dropfix_bin().display()
    );
    let mut cmd = command("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    let before = f.snapshot();
    let r = run_command(cmd, &format!("unshare -m sh -c {script:?}"));
    // tests/run runs as root: a mount that cannot be made is a failure, never a skip.
    assert!(
        !(r.code == 99 || (r.code == 1 && r.stderr.contains("unshare"))),
        "cannot make a read-only bind mount (this test needs root and unshare)\n{r}"
    );
    let line = r.expect_one_line_error();
    assert!(line.contains("Read-only file system"), "{r}");
    f.snapshot()
        .assert_same(&before, true, "fix on a read-only root");
}

#[test]
fn usage_errors_exit_2() {
    let f = slave_root();
    for args in [
        &["fix", "--check", "--dry-run"][..],
        &["fix", "--strategy", "sideways"][..],
        &["fix", "--systemd-version", "x"][..],
        &["frobnicate"][..],
    ] {
        let r = f.run(args);
        r.expect_code(2);
        assert!(!r.stderr.contains("panicked"), "{r}");
    }
}

#[test]
fn odd_but_possible_unit_files_never_make_dropfix_panic() {
    // A grab bag of odd but possible files: each either works or fails cleanly.
    let cases: &[&[u8]] = &[
        b"",
        b"\n\n\n",
        b"[Service]\nMountFlags=slave\\",
        b"[Service]\nMountFlags=slave\\\n\\\n\\\n",
        b"\xef\xbb\xbf[Service]\r\nMountFlags=slave\r\n",
        b"[Service]\x00MountFlags=slave\x00",
        b"[Service]\rMountFlags=slave\r",
        b"MountFlags=slave\n",
        b"[]\nMountFlags=slave\n",
        b"[Service]\n=\n==\nMountFlags\n",
        b"[Service]\nMountFlags=slave\n[Service]\nMountFlags=\n",
        b"# just a comment \\\n",
        b"[Service]\n#\xff\xfe comment with bad bytes\nMountFlags=slave\n",
    ];
    for (i, data) in cases.iter().enumerate() {
        for v in ["231", "252"] {
            let f = Fixture::with_docker(*data);
            let r = f.run(&["fix", "--systemd-version", v]);
            assert!(!r.stderr.contains("panicked"), "case {i}\n{r}");
            assert!(r.code == 0 || r.code == 1, "case {i}\n{r}");
            if r.code == 1 {
                r.expect_one_line_error();
            } else {
                let c = f.run(&["fix", "--check", "--systemd-version", v]);
                assert_eq!(c.code, 0, "case {i}: still pending after fix\n{c}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn json_output_has_the_documented_shape() {
    let f = slave_root();
    f.file(
        "/usr/lib/systemd/system/early-docker.service",
        SLAVE_UNIT.replace("Description=Docker", "Description=Early Docker"),
    );
    for v in ["231", "252"] {
        let r = f.run(&[
            "fix",
            "--dry-run",
            "--format",
            "json",
            "--systemd-version",
            v,
        ]);
        let j = r.expect_code(0).json();
        assert!(j.is_object(), "{j:#}");
        assert_eq!(j["changed"], true);
        let units = j["units"].as_array().expect("units array");
        assert_eq!(units.len(), 2, "{j:#}");
        for u in units {
            assert!(u["unit"].is_string());
            let s = u["strategy"].as_str().expect("strategy string");
            assert!(["drop-in", "full-copy", "none"].contains(&s), "{s}");
            assert_eq!(u["systemd_version"], v.parse::<u32>().unwrap());
            for k in ["mount_flags_before", "mount_flags_after"] {
                let mf = u[k].as_str().expect("mount flags string");
                assert!(["slave", "shared", "private", ""].contains(&mf), "{k}={mf}");
            }
            assert_eq!(u["mount_flags_before"], "slave");
            assert_eq!(u["mount_flags_after"], "");
            assert!(u["warnings"]
                .as_array()
                .expect("warnings")
                .iter()
                .all(Value::is_string));
            let files = u["files"].as_array().expect("files array");
            assert!(!files.is_empty());
            for fr in files {
                let p = fr["path"].as_str().expect("path");
                assert!(p.starts_with("/etc/systemd/system/"), "{p}");
                let a = fr["action"].as_str().expect("action");
                assert!(["create", "replace", "remove"].contains(&a), "{a}");
                let d = fr["diff"].as_str().expect("diff");
                let rel = p.trim_start_matches('/');
                assert!(d.starts_with(&format!("--- a/{rel}\n+++ b/{rel}\n")), "{d}");
            }
        }
        // The text printed is exactly one JSON object, nothing else on stdout.
        assert_eq!(r.stdout.trim_end().matches("\n}").count(), 1, "{r}");
    }
    let j = f
        .run(&["fix", "--format", "json", "--systemd-version", "252"])
        .expect_code(0)
        .json();
    assert_eq!(j["changed"], true);
    let j = f
        .run(&["fix", "--format", "json", "--systemd-version", "252"])
        .expect_code(0)
        .json();
    assert_eq!(j["changed"], false);
    for u in j["units"].as_array().unwrap() {
        assert_eq!(u["strategy"], "none");
        assert_eq!(u["files"], serde_json::json!([]));
    }
}

#[test]
fn json_check_exits_3_and_still_prints_the_json() {
    let f = slave_root();
    let r = f.run(&[
        "fix",
        "--check",
        "--format",
        "json",
        "--systemd-version",
        "252",
    ]);
    r.expect_code(3);
    assert_eq!(r.json()["changed"], true);
}

// ---------------------------------------------------------------------------------------------
// Warnings
// ---------------------------------------------------------------------------------------------

#[test]
fn private_tmp_in_the_vendor_unit_warns_that_the_mounts_stay_invisible() {
    let f = Fixture::with_docker(SLAVE_UNIT.replace("Type=notify", "Type=notify\nPrivateTmp=yes"));
    let j = f
        .run(&[
            "fix",
            "--dry-run",
            "--format",
            "json",
            "--systemd-version",
            "252",
        ])
        .expect_code(0)
        .json();
    let w: Vec<&str> = unit(&j, "docker.service")["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        w.iter()
            .any(|w| w.contains("PrivateTmp") && w.contains("invisible")),
        "{j:#}"
    );
    let text = f.run(&["fix", "--dry-run", "--systemd-version", "252"]);
    assert!(
        text.stdout.contains("warning:") && text.stdout.contains("PrivateTmp"),
        "{text}"
    );
}

#[test]
fn private_tmp_turned_off_by_a_drop_in_gives_no_warning() {
    let f = Fixture::with_docker(SLAVE_UNIT.replace("Type=notify", "Type=notify\nPrivateTmp=yes"));
    f.file(
        "/etc/systemd/system/docker.service.d/10-no-private-tmp.conf",
        "[Service]\nPrivateTmp=no\n",
    );
    let j = f
        .run(&[
            "fix",
            "--dry-run",
            "--format",
            "json",
            "--systemd-version",
            "252",
        ])
        .expect_code(0)
        .json();
    assert_eq!(
        unit(&j, "docker.service")["warnings"],
        serde_json::json!([])
    );
}

// ---------------------------------------------------------------------------------------------
// Which units
// ---------------------------------------------------------------------------------------------

#[test]
fn early_docker_is_fixed_too_when_present() {
    let f = slave_root();
    let early = "/usr/lib/systemd/system/early-docker.service";
    f.file(
        early,
        SLAVE_UNIT.replace("Description=Docker", "Description=Early Docker"),
    );
    for (v, want) in [
        ("231", "/etc/systemd/system/early-docker.service"),
        (
            "252",
            "/etc/systemd/system/early-docker.service.d/zz-dropfix-mountflags.conf",
        ),
    ] {
        let j = f
            .run(&[
                "fix",
                "--dry-run",
                "--format",
                "json",
                "--systemd-version",
                v,
            ])
            .expect_code(0)
            .json();
        assert_eq!(file_paths(unit(&j, "early-docker.service")), [want]);
    }
    f.run(&["fix", "--systemd-version", "252"]).expect_code(0);
    assert_eq!(
        effective_mount_flags(f.path(), "early-docker.service", 252),
        ""
    );
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 252), "");
}

#[test]
fn early_docker_is_silently_skipped_when_absent() {
    let f = slave_root();
    let r = f.run(&["fix", "--dry-run", "--systemd-version", "252"]);
    r.expect_code(0);
    assert!(!r.stdout.contains("early-docker"), "{r}");
    assert_eq!(r.stderr, "", "{r}");
    let j = f
        .run(&[
            "fix",
            "--dry-run",
            "--format",
            "json",
            "--systemd-version",
            "252",
        ])
        .expect_code(0)
        .json();
    let names: Vec<&str> = j["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docker.service"]);
}

#[test]
fn explicit_unit_arguments_pick_the_units_and_a_bare_name_means_service() {
    let f = slave_root();
    f.file(
        "/usr/lib/systemd/system/early-docker.service",
        SLAVE_UNIT.replace("Description=Docker", "Description=Early Docker"),
    );
    f.file(
        "/usr/lib/systemd/system/containerd.service",
        "[Service]\nExecStart=/usr/bin/containerd\nMountFlags=private\n",
    );
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec![
            "fix",
            "--dry-run",
            "--format",
            "json",
            "--systemd-version",
            "252",
        ];
        all.extend_from_slice(args);
        let j = f.run(&all).expect_code(0).json();
        j["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["unit"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["early-docker"]), ["early-docker.service"]);
    assert_eq!(names(&["containerd.service"]), ["containerd.service"]);
    assert_eq!(
        names(&["docker", "containerd"]),
        ["docker.service", "containerd.service"]
    );
    f.run(&["fix", "--systemd-version", "252", "containerd"])
        .expect_code(0);
    assert!(f.exists("/etc/systemd/system/containerd.service.d/zz-dropfix-mountflags.conf"));
    assert!(!f.exists("/etc/systemd/system/docker.service.d"));
    assert_eq!(
        effective_mount_flags(f.path(), "containerd.service", 252),
        ""
    );
}

#[test]
fn alias_symlink_given_as_unit_resolves_to_the_real_unit() {
    let f = slave_root();
    f.symlink("/etc/systemd/system/dockerd.service", VENDOR_DOCKER);
    f.age();
    let j = f
        .run(&[
            "fix",
            "--format",
            "json",
            "--systemd-version",
            "252",
            "dockerd",
        ])
        .expect_code(0)
        .json();
    let units = j["units"].as_array().unwrap();
    assert_eq!(units.len(), 1, "{j:#}");
    assert_eq!(units[0]["unit"], "docker.service");
    assert_eq!(file_paths(&units[0]), [OWN_DROPIN]);
    assert!(
        f.exists("/etc/systemd/system/dockerd.service"),
        "the alias link is gone"
    );
    assert_eq!(effective_mount_flags(f.path(), "docker.service", 252), "");
}

#[test]
fn relative_root_path_works_like_an_absolute_one() {
    let f = slave_root();
    let before = f.snapshot();
    let mut cmd = dropfix(&[]);
    cmd.current_dir(f.path()).args([
        "fix",
        "--dry-run",
        "--systemd-version",
        "252",
        "--root",
        ".",
    ]);
    let r = run_command(cmd, "dropfix fix --dry-run --root .");
    r.expect_code(0);
    assert!(r.stdout.contains("MountFlags: slave -> (unset)"), "{r}");
    f.snapshot()
        .assert_same(&before, true, "dry run on --root .");
}

#[test]
fn a_full_copy_of_a_transient_unit_goes_to_system_control_which_outranks_it() {
    // /run/systemd/transient outranks /etc/systemd/system: a copy there would never load, so
    // the copy goes to /etc/systemd/system.control, the lowest persistent directory above it.
    let f = Fixture::new();
    f.file(
        "/run/systemd/transient/dfx.service",
        "[Service]\nExecStart=/bin/true\nMountFlags=slave\n",
    );
    let r = f.run(&[
        "fix",
        "dfx.service",
        "--systemd-version",
        "231",
        "--format",
        "json",
    ]);
    r.expect_code(0);
    let j = r.json();
    assert_eq!(
        j["units"][0]["files"][0]["path"], "/etc/systemd/system.control/dfx.service",
        "{j}"
    );
    assert!(f.exists("/etc/systemd/system.control/dfx.service"));
    assert!(!f.exists("/etc/systemd/system/dfx.service"));
    let show = f.run(&["show", "dfx.service", "--format", "json"]).json();
    assert_eq!(
        show["fragment"], "/etc/systemd/system.control/dfx.service",
        "{show}"
    );
    f.run(&["revert"]).expect_code(0);
    assert!(!f.exists("/etc/systemd/system.control/dfx.service"));
}
