//! What a user reads and types: the man pages `dropfix generate man` writes (with EXIT STATUS,
//! ENVIRONMENT, FILES, EXAMPLES and SEE ALSO, rendered by groff without a warning) and the
//! completion scripts, which offer service names from systemd where a UNIT goes (run in real
//! bash, zsh and fish, with a stand-in `systemctl` on PATH).

mod common;

use common::run;
use std::fs;
use std::path::Path;
use std::process::Command;

const PAGES: &[&str] = &[
    "dropfix",
    "dropfix-fix",
    "dropfix-revert",
    "dropfix-doctor",
    "dropfix-scan",
    "dropfix-show",
    "dropfix-set",
    "dropfix-unset",
];

#[test]
fn man_pages_have_exit_status_environment_files_examples_and_see_also() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/man1");
    run(&["generate", "man", dir.to_str().unwrap()]).expect_code(0);
    for page in PAGES {
        let path = dir.join(format!("{page}.1"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}.1: {e}"));
        for section in [
            ".SH \"EXIT STATUS\"",
            ".SH \"ENVIRONMENT\"",
            ".SH \"FILES\"",
            ".SH EXAMPLES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(text.contains(section), "{page}: no {section}");
        }
        for status in ["0", "1", "2", "3", "4"] {
            assert!(
                text.contains(&format!(".TP\n\\fB{status}\\fR\n")),
                "{page}: exit status {status}"
            );
        }
        for needle in [
            "DBUS_SYSTEM_BUS_ADDRESS",
            "NO_COLOR",
            r"/etc/systemd/system/*.d/zz\-dropfix\-*.conf",
            r"/var/lib/dropfix/state.json",
            r"/run/dropfix.lock",
            r"/run/docker.sock",
            r"\fBsystemd.exec\fR(5)",
        ] {
            assert!(text.contains(needle), "{page}: no {needle}");
        }
        assert!(
            !text.contains(&format!("\\fB{}\\fR(1)", page.replace('-', "\\-"))),
            "{page} lists itself under SEE ALSO"
        );
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run groff (apt-get install groff-base): {e}"));
        assert!(out.status.success(), "groff {page}.1");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "groff warns about {page}.1"
        );
    }
    let doctor = fs::read_to_string(dir.join("dropfix-doctor.1")).unwrap();
    assert!(doctor.contains(r"\fBdropfix doctor \-\-format prometheus \-\-output"));
    assert!(
        !dir.join("dropfix-generate.1").exists(),
        "hidden stays hidden"
    );
}

#[test]
fn man_into_a_directory_that_cannot_be_made_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain");
    fs::write(&file, "").unwrap();
    let dir = file.join("man1");
    let r = run(&["generate", "man", dir.to_str().unwrap()]);
    let line = r.expect_one_line_error();
    assert!(
        line.contains(&format!("generate man {}", dir.display())),
        "{line}"
    );
}

/// A directory with a `systemctl` that lists three services, for PATH.
fn stub_systemctl(dir: &Path) -> String {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let script = "#!/bin/sh\n\
        [ \"$1 $2 $3\" = \"list-unit-files --type=service --no-legend\" ] || exit 1\n\
        printf 'docker.service enabled enabled\\ndockerd-extra.service disabled enabled\\nssh.service enabled enabled\\n'\n";
    fs::write(bin.join("systemctl"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(bin.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn script(shell: &str, dir: &Path) -> std::path::PathBuf {
    let r = run(&["generate", "completions", shell]);
    r.expect_code(0);
    let p = dir.join(format!("dropfix.{shell}"));
    fs::write(&p, &r.stdout).unwrap();
    p
}

fn shell_out(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_unit_names_where_a_unit_goes_and_options_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let path = stub_systemctl(tmp.path());
    let s = script("bash", tmp.path());
    let probe = r#"
        source "$1"
        t() { COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
              _dropfix_with_units dropfix "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"
              echo "${COMPREPLY[*]}"; }
        t dropfix fix do
        t dropfix --root /x doctor ""
        t dropfix show docker.service Li
        t dropfix set ss
        t dropfix fix --dry
        t dropfix fi
    "#;
    let out = shell_out(
        Command::new("bash")
            .args(["-c", probe, "probe"])
            .arg(&s)
            .env("PATH", &path),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "docker.service dockerd-extra.service",
            "docker.service dockerd-extra.service ssh.service",
            "",
            "ssh.service",
            "--dry-run",
            "fix",
        ],
        "{out}"
    );
}

#[test]
fn zsh_completes_unit_arguments_with_unit_names() {
    let tmp = tempfile::tempdir().unwrap();
    let path = stub_systemctl(tmp.path());
    let s = script("zsh", tmp.path());
    let text = fs::read_to_string(&s).unwrap();
    for sub_line in ["'*::units -- Units to fix", "':unit -- The unit"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(sub_line))
            .unwrap_or_else(|| panic!("no {sub_line} in\n{text}"));
        assert!(line.ends_with(":_dropfix_units' \\"), "{line}");
    }
    shell_out(Command::new("zsh").arg("-n").arg(&s));
    // The helper, with zsh's compadd standing in: the names systemd lists.
    let probe = r#"
        compadd() { shift; print -l -- "${(@P)1}"; }
        source "$1" 2>/dev/null
        _dropfix_units
    "#;
    let out = shell_out(
        Command::new("zsh")
            .args(["-f", "-c", probe, "probe"])
            .arg(&s)
            .env("PATH", &path),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["docker.service", "dockerd-extra.service", "ssh.service"],
        "{out}"
    );
}

#[test]
fn fish_completes_unit_names_after_a_subcommand_that_takes_units() {
    let tmp = tempfile::tempdir().unwrap();
    let path = stub_systemctl(tmp.path());
    let s = script("fish", tmp.path());
    let complete = |line: &str| {
        shell_out(
            Command::new("fish")
                .args(["--no-config", "-c"])
                .arg(format!("source {}; complete -C '{line}'", s.display()))
                .env("PATH", &path),
        )
    };
    let out = complete("dropfix fix do");
    let names: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(names, ["docker.service", "dockerd-extra.service"], "{out}");
    let out = complete("dropfix fix --dry");
    assert!(out.starts_with("--dry-run"), "{out}");
}
