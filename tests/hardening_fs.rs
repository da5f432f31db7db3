//! Hostile file system: symlinks planted at the drop-in path, at the `.d` directory, at the state
//! directory, at a parent, at a backup or the manifest, pointing outside the root (absolute and
//! climbing `..`), into /usr, or in a loop. Nothing is ever written outside the intended paths:
//! either the link itself is replaced (and `revert` puts it back), or dropfix stops with a clear
//! one-line error, exit 1, and the root is left exactly as it was.

mod hardening_util;

use hardening_util::*;
use std::os::unix::fs::symlink;
use std::path::Path;

const FIX: &[&str] = &["fix", "--systemd-version", "252"];
const DROPIN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf";

struct Case {
    root: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Case {
    /// A host-like root plus a directory outside it with one file, to aim links at.
    fn new(f: Fixture) -> Case {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        f.build(root.path());
        std::fs::create_dir_all(outside.path().join("systemd/system")).unwrap();
        std::fs::write(outside.path().join("victim.conf"), "precious\n").unwrap();
        Case { root, outside }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn out(&self) -> String {
        self.outside.path().to_str().unwrap().to_string()
    }

    /// Plants a symlink at an in-root path (parents created).
    fn plant(&self, inner: &str, target: &str) {
        let p = at(self.root(), inner);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    /// Runs dropfix; asserts the outside directory and (on failure) the root are untouched.
    /// Returns (exit code, the one stderr line).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let outside_before = snapshot(self.outside.path());
        let before = snapshot(self.root());
        let out = run(self.root(), args);
        let code = out.status.code().unwrap();
        let err = stderr(&out);
        let outside_after = snapshot(self.outside.path());
        assert!(
            outside_before == outside_after,
            "written outside the root:\n{}",
            tree_diff(&outside_before, &outside_after)
        );
        if code != 0 {
            let after = snapshot(self.root());
            assert!(
                before == after,
                "a failed run changed the root:\n{}",
                tree_diff(&before, &after)
            );
            assert_eq!(code, 1, "{err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.starts_with("dropfix: error: "), "{err}");
        }
        (code, err.trim_end().to_string())
    }
}

#[test]
fn symlink_at_the_drop_in_path_is_replaced_not_followed_and_revert_puts_it_back() {
    let c = Case::new(host_like());
    let victim = format!("{}/victim.conf", c.out());
    c.plant(DROPIN, &victim);
    let (code, err) = c.run(FIX);
    assert_eq!(code, 0, "{err}");
    let m = std::fs::symlink_metadata(at(c.root(), DROPIN)).unwrap();
    assert!(m.is_file(), "the link was replaced by the drop-in");
    let (code, err) = c.run(&["revert"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_link(at(c.root(), DROPIN)).unwrap(),
        Path::new(&victim)
    );
}

#[test]
fn symlink_at_the_drop_in_path_into_usr_leaves_usr_alone() {
    let c = Case::new(host_like().file("/usr/lib/systemd/system/x.conf", "vendor\n"));
    c.plant(DROPIN, "/usr/lib/systemd/system/x.conf");
    let (code, err) = c.run(FIX);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(at(c.root(), "/usr/lib/systemd/system/x.conf")).unwrap(),
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
    let up = "../".repeat(c.root().components().count() + 2);
    c.plant(
        "/etc/systemd/system/docker.service.d",
        &format!("{up}{}", c.out().trim_start_matches('/')),
    );
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(err.contains("climbs above the root"), "{err}");
}

#[test]
fn symlinked_parent_etc_systemd_system_into_usr_is_refused() {
    let c = Case::new(host_like());
    std::fs::remove_dir_all(at(c.root(), "/etc/systemd/system")).unwrap();
    c.plant("/etc/systemd/system", "/usr/lib/systemd/system");
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to write through /etc/systemd/system"),
        "{err}"
    );
    assert!(!at(c.root(), "/usr/lib/systemd/system/docker.service.d").exists());
}

#[test]
fn symlinked_parent_etc_pointing_outside_is_refused() {
    let c = Case::new(host_like());
    std::fs::remove_dir_all(at(c.root(), "/etc")).unwrap();
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
    std::fs::remove_dir_all(at(c.root(), "/var/lib")).unwrap();
    c.plant("/var/lib", &c.out());
    let (code, err) = c.run(FIX);
    assert_eq!(code, 1);
    assert!(err.contains("refusing to write through /var/lib"), "{err}");
}

#[test]
fn symlinked_backup_directory_is_refused() {
    let c = Case::new(host_like().raw(
        "/etc/systemd/system/docker.service",
        0o644,
        vendor_docker().as_bytes(),
    ));
    std::fs::create_dir_all(at(c.root(), "/var/lib/dropfix")).unwrap();
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
    assert!(err.contains("too many levels of symbolic links"), "{err}");
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
    let c = Case::new(host_like().raw(
        "/etc/systemd/system/docker.service",
        0o644,
        vendor_docker().as_bytes(),
    ));
    let victim = format!("{}/victim.conf", c.out());
    c.plant(
        "/var/lib/dropfix/backup/etc%2Fsystemd%2Fsystem%2Fdocker.service",
        &victim,
    );
    std::fs::remove_dir_all(at(c.root(), "/var/lib/dropfix")).ok();
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
        std::fs::read(at(c.root(), "/etc/systemd/system/docker.service")).unwrap(),
        vendor_docker().as_bytes()
    );
}
