//! Hostile file system: symlinks planted at the drop-in path, at the `.d` directory, at the state
//! directory, at a parent, at a backup or the manifest, pointing outside the root (absolute and
//! climbing `..`), into /usr, or in a loop. Nothing is ever written outside the intended paths:
//! either the link itself is replaced (and `revert` puts it back), or dropfix stops with a clear
//! one-line error, exit 1, and the root is left exactly as it was.

mod common;

use common::*;
use std::path::Path;

const FIX: &[&str] = &["fix", "--systemd-version", "252"];

struct Case {
    root: Fixture,
    outside: Fixture,
}

impl Case {
    /// A host-like root plus a directory outside it with one file, to aim links at.
    fn new(root: Fixture) -> Case {
        let outside = Fixture::new();
        outside
            .dir("/systemd/system")
            .file("/victim.conf", "precious\n");
        Case { root, outside }
    }

    fn out(&self) -> String {
        self.outside.root_arg().to_string()
    }

    /// Plants a symlink at an in-root path (parents created).
    fn plant(&self, inner: &str, target: &str) {
        self.root.symlink(inner, target);
    }

    /// Runs dropfix; asserts the outside directory and (on failure) the root are untouched.
    /// Returns (exit code, the one stderr line).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let outside_before = self.outside.snapshot();
        let before = self.root.snapshot();
        let r = self.root.run(args);
        outside_before.assert_same(&self.outside.snapshot(), true, "written outside the root");
        if r.code != 0 {
            before.assert_same(&self.root.snapshot(), true, "a failed run changed the root");
            r.expect_one_line_error();
        }
        (r.code, r.stderr.trim_end().to_string())
    }
}

#[test]
fn symlink_at_the_drop_in_path_is_never_followed_and_revert_leaves_it() {
    // A dangling link at dropfix's own drop-in name is, to systemd, a drop-in that sets
    // nothing: dropfix leaves it alone, writes its drop-in under a later-sorting name, and
    // never writes through the link.
    let c = Case::new(host_like());
    let victim = format!("{}/victim.conf", c.out());
    c.plant(OWN_DROPIN, &victim);
    let (code, err) = c.run(FIX);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_link(c.root.host(OWN_DROPIN)).unwrap(),
        Path::new(&victim),
        "the link is left as it was"
    );
    // (Case::run checks the directory outside the root is untouched.)
    let later = "/etc/systemd/system/docker.service.d/zzz-dropfix-mountflags.conf";
    assert!(std::fs::symlink_metadata(c.root.host(later))
        .unwrap()
        .is_file());
    let (code, err) = c.run(&["revert"]);
    assert_eq!(code, 0, "{err}");
    assert!(!c.root.host(later).exists());
    assert_eq!(
        std::fs::read_link(c.root.host(OWN_DROPIN)).unwrap(),
        Path::new(&victim)
    );
}

#[test]
fn symlink_at_the_drop_in_path_into_usr_leaves_usr_alone() {
    let f = host_like();
    f.file("/usr/lib/systemd/system/x.conf", "vendor\n");
    let c = Case::new(f);
    c.plant(OWN_DROPIN, "/usr/lib/systemd/system/x.conf");
    let (code, err) = c.run(FIX);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(c.root.host("/usr/lib/systemd/system/x.conf")).unwrap(),
        "vendor\n"
    );
}

#[test]
fn symlinked_dot_d_directory_pointing_outside_is_refused() {
    let c = Case::new(host_like());
    c.plant("/etc/systemd/system/docker.service.d", &c.out());
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to write through /etc/systemd/system/docker.service.d"),
        "{err}"
    );
}

#[test]
fn symlinked_dot_d_directory_climbing_out_of_the_root_is_refused() {
    let c = Case::new(host_like());
    let up = "../".repeat(c.root.path().components().count() + 2);
    c.plant(
        "/etc/systemd/system/docker.service.d",
        &format!("{up}{}", c.out().trim_start_matches('/')),
    );
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    // systemd does not read a relative .d link that does not resolve from /, and dropfix never
    // writes through a symlinked .d directory.
    assert!(
        err.contains("refusing to write through /etc/systemd/system/docker.service.d"),
        "{err}"
    );
}

#[test]
fn symlinked_parent_etc_systemd_system_into_usr_is_refused() {
    let c = Case::new(host_like());
    std::fs::remove_dir_all(c.root.host("/etc/systemd/system")).unwrap();
    c.plant("/etc/systemd/system", "/usr/lib/systemd/system");
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to write through /etc/systemd/system"),
        "{err}"
    );
    assert!(!c
        .root
        .host("/usr/lib/systemd/system/docker.service.d")
        .exists());
}

#[test]
fn symlinked_parent_etc_pointing_outside_is_refused() {
    let c = Case::new(host_like());
    std::fs::remove_dir_all(c.root.host("/etc")).unwrap();
    c.plant("/etc", &c.out());
    let (code, err) = c.run(&["fix", "--systemd-version", "231"]);
    assert_eq!(code, 1);
    assert!(err.contains("refusing to write through /etc"), "{err}");
}

#[test]
fn symlinked_state_directory_is_refused() {
    let c = Case::new(host_like());
    c.plant("/var/lib/dropfix", &c.out());
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to write through /var/lib/dropfix"),
        "{err}"
    );
}

#[test]
fn symlinked_var_lib_is_refused() {
    let c = Case::new(host_like());
    std::fs::remove_dir_all(c.root.host("/var/lib")).unwrap();
    c.plant("/var/lib", &c.out());
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(err.contains("refusing to write through /var/lib"), "{err}");
}

#[test]
fn symlinked_backup_directory_is_refused() {
    let f = host_like();
    f.file("/etc/systemd/system/docker.service", vendor_docker());
    let c = Case::new(f);
    std::fs::create_dir_all(c.root.host("/var/lib/dropfix")).unwrap();
    c.plant("/var/lib/dropfix/backup", &c.out());
    let (code, err) = c.run(&["fix", "--systemd-version", "231"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to write through /var/lib/dropfix/backup"),
        "{err}"
    );
}

#[test]
fn symlinked_manifest_is_refused() {
    let c = Case::new(host_like());
    c.plant(
        "/var/lib/dropfix/state.json",
        &format!("{}/victim.conf", c.out()),
    );
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(
        err.contains("/var/lib/dropfix/state.json: not a regular file"),
        "{err}"
    );
    let (code, err) = c.run(&["revert"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn full_copy_target_linked_outside_the_root_is_refused() {
    let c = Case::new(host_like());
    c.plant(
        "/etc/systemd/system/docker.service",
        &format!("{}/victim.conf", c.out()),
    );
    let (code, err) = c.run(&["fix", "--systemd-version", "231"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/etc/systemd/system/docker.service"), "{err}");
}

#[test]
fn symlink_loop_at_the_dot_d_directory_is_an_error_not_a_hang() {
    let c = Case::new(host_like());
    c.plant("/etc/systemd/system/docker.service.d", "loop.d");
    c.plant("/etc/systemd/system/loop.d", "docker.service.d");
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to write through /etc/systemd/system/docker.service.d"),
        "{err}"
    );
}

#[test]
fn symlink_loop_at_a_vendor_drop_in_is_an_error_not_a_hang() {
    let c = Case::new(host_like());
    c.plant("/usr/lib/systemd/system/docker.service.d/a.conf", "b.conf");
    c.plant("/usr/lib/systemd/system/docker.service.d/b.conf", "a.conf");
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(err.contains("too many levels of symbolic links"), "{err}");
}

#[test]
fn symlink_planted_at_a_backup_file_is_replaced_not_written_through() {
    let f = host_like();
    f.file("/etc/systemd/system/docker.service", vendor_docker());
    let c = Case::new(f);
    let victim = format!("{}/victim.conf", c.out());
    c.plant(
        "/var/lib/dropfix/backup/etc%2Fsystemd%2Fsystem%2Fdocker.service",
        &victim,
    );
    std::fs::remove_dir_all(c.root.host("/var/lib/dropfix")).ok();
    // A stale state directory without a manifest, with the link in its backup directory.
    c.plant(
        "/var/lib/dropfix/backup/etc%2Fsystemd%2Fsystem%2Fdocker.service",
        &victim,
    );
    let (code, err) = c.run(&["fix", "--systemd-version", "231"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = c.run(&["revert"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(c.root.host("/etc/systemd/system/docker.service")).unwrap(),
        vendor_docker().as_bytes()
    );
}
