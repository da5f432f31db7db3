//! What packaging/ ships: the Ignition config `dropfix generate ignition` writes, the Butane
//! config, the legacy cloud-config, the .deb, and the static release binary. The unit text each one installs must be
//! packaging/dropfix-firstboot.service byte for byte (the unit the live tests prove).

mod support;

use serde_json::Value as Json;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

const UNIT: &str = include_str!("../packaging/dropfix-firstboot.service");
const UNIT_NAME: &str = "dropfix-firstboot.service";
const BUTANE: &str = include_str!("../packaging/coreos/dropfix.bu");
const CLOUD_CONFIG: &str = include_str!("../packaging/coreos/cloud-config.yml");
/// Where the CoreOS configs put the static binary (/usr is read-only there).
const OPT_BIN: &str = "/opt/bin/dropfix";

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("YAML: {e}"));
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.remove(0)
}

fn ystr<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {y:?}"))
}

fn jstr<'a>(j: &'a Json, what: &str) -> &'a str {
    j.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {j}"))
}

/// The `ExecStart=` lines of a unit or drop-in, in order (an empty one resets the list).
fn exec_start(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ExecStart=") {
            if v.is_empty() {
                out.clear();
            } else {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// The unit's command, with the drop-in applied: the same arguments, run from /opt/bin.
fn assert_dropin_runs_the_unit_command_from_opt_bin(dropin: &str) {
    let unit = exec_start(UNIT);
    assert_eq!(unit.len(), 1, "{unit:?}");
    assert!(
        dropin.contains("[Service]\n") && dropin.contains("ExecStart=\n"),
        "the drop-in resets ExecStart:\n{dropin}"
    );
    let merged = exec_start(&format!("{UNIT}{dropin}"));
    let want = unit[0].replacen("/usr/bin/dropfix", OPT_BIN, 1);
    assert_ne!(want, unit[0], "the unit runs /usr/bin/dropfix");
    assert_eq!(merged, vec![want]);
}

#[test]
fn shipped_unit_is_a_oneshot_ordered_before_docker_with_no_restart() {
    assert!(UNIT.contains("\nType=oneshot\n"));
    assert!(UNIT.contains("\nRemainAfterExit=yes\n"));
    assert!(UNIT.contains("\nBefore=docker.service early-docker.service\n"));
    assert!(UNIT.contains("\nWantedBy=multi-user.target\n"));
    assert_eq!(
        exec_start(UNIT),
        vec!["/usr/bin/dropfix fix --no-restart".to_string()]
    );
}

#[test]
fn butane_config_installs_the_static_binary_and_embeds_the_shipped_unit_byte_for_byte() {
    let b = yaml(BUTANE);
    assert_eq!(ystr(&b["variant"], "variant"), "flatcar");
    assert_eq!(ystr(&b["version"], "version"), "1.0.0");
    let files = b["storage"]["files"].as_vec().expect("storage.files");
    assert_eq!(files.len(), 1);
    assert_eq!(ystr(&files[0]["path"], "path"), OPT_BIN);
    // Butane's YAML (go-yaml) reads 0755 as octal; yaml-rust2 follows YAML 1.2 and reads the
    // digits as decimal 755. Either way the text says rwxr-xr-x.
    assert_eq!(files[0]["mode"].as_i64(), Some(755));
    assert!(ystr(&files[0]["contents"]["source"], "source").starts_with("https://"));
    let units = b["systemd"]["units"].as_vec().expect("systemd.units");
    assert_eq!(units.len(), 1);
    let u = &units[0];
    assert_eq!(ystr(&u["name"], "name"), UNIT_NAME);
    assert_eq!(u["enabled"].as_bool(), Some(true));
    assert_eq!(ystr(&u["contents"], "contents"), UNIT, "unit text");
    let dropins = u["dropins"].as_vec().expect("dropins");
    assert_eq!(dropins.len(), 1);
    assert_eq!(ystr(&dropins[0]["name"], "dropin name"), "10-opt-bin.conf");
    assert_dropin_runs_the_unit_command_from_opt_bin(ystr(&dropins[0]["contents"], "dropin"));
}

/// The drop-in `dropfix generate ignition` writes (templates/ignition-opt-bin.conf).
const OPT_BIN_DROPIN: &str = include_str!("../templates/ignition-opt-bin.conf");

fn generate_ignition(url: &str) -> (String, Json) {
    let bin = support::dropfix_bin();
    let text = run(Command::new(&bin)
        .args(["generate", "ignition", "--url", url, "--binary"])
        .arg(&bin));
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    (text, json)
}

/// `dropfix generate ignition`: spec 3.3.0, the binary's SHA-512 as sha512sum computes it, the
/// URL as given, mode 0755 at /opt/bin, the shipped unit byte for byte and enabled, the
/// drop-in that runs it from /opt/bin; nothing else. Ignition's own validator (Debian's
/// ignition package) accepts it. tests/provision.rs has Ignition apply it and boots the result.
#[test]
fn generated_ignition_config_pins_the_binary_hash_and_embeds_the_shipped_unit() {
    let url = "https://downloads.example.com/dropfix/0.1.0/dropfix-x86_64-linux-static";
    let (text, i) = generate_ignition(url);
    assert_eq!(i["ignition"]["version"], "3.3.0");
    let files = i["storage"]["files"].as_array().expect("storage.files");
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(jstr(&f["path"], "path"), OPT_BIN);
    assert_eq!(f["mode"], 0o755);
    assert_eq!(jstr(&f["contents"]["source"], "source"), url);
    let sum = run(Command::new("sha512sum").arg(support::dropfix_bin()));
    let hex = sum.split_whitespace().next().expect("sha512sum output");
    assert_eq!(
        jstr(&f["contents"]["verification"]["hash"], "hash"),
        format!("sha512-{hex}")
    );
    let units = i["systemd"]["units"].as_array().expect("systemd.units");
    assert_eq!(units.len(), 1);
    let u = &units[0];
    assert_eq!(jstr(&u["name"], "name"), UNIT_NAME);
    assert_eq!(u["enabled"], true);
    assert_eq!(
        jstr(&u["contents"], "contents"),
        UNIT,
        "unit text, byte for byte"
    );
    let d = &u["dropins"][0];
    assert_eq!(jstr(&d["name"], "name"), "10-opt-bin.conf");
    assert_eq!(jstr(&d["contents"], "contents"), OPT_BIN_DROPIN);
    assert_dropin_runs_the_unit_command_from_opt_bin(OPT_BIN_DROPIN);
    let keys: Vec<&String> = i.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["ignition", "storage", "systemd"]);

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dropfix.ign");
    fs::write(&path, &text).unwrap();
    let out = Command::new("ignition-validate")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ignition-validate (apt-get install ignition): {e}"));
    assert!(
        out.status.success(),
        "ignition-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Butane config, for those who write their own with Butane, installs what the generated
/// config does: same unit, same drop-in.
#[test]
fn butane_config_installs_what_the_generated_ignition_config_does() {
    let b = yaml(BUTANE);
    let u = &b["systemd"]["units"][0];
    let d = &u["dropins"][0];
    assert_eq!(ystr(&d["name"], "name"), "10-opt-bin.conf");
    assert_eq!(ystr(&d["contents"], "contents"), OPT_BIN_DROPIN);
}

#[test]
fn generate_ignition_refuses_a_url_ignition_cannot_fetch_and_a_file_that_is_no_binary() {
    let bin = support::dropfix_bin();
    let out = Command::new(&bin)
        .args(["generate", "ignition", "--url", "ftp://h/d", "--binary"])
        .arg(&bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("dropfix: error: --url ftp://h/d: "),
        "{err}"
    );
    let out = Command::new(&bin)
        .args(["generate", "ignition", "--url", "https://h/d", "--binary"])
        .arg(top().join("README.md"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("README.md: not an ELF executable"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn cloud_config_enables_the_shipped_unit_byte_for_byte_and_installs_the_binary_first() {
    assert!(
        CLOUD_CONFIG.starts_with("#cloud-config\n"),
        "coreos-cloudinit wants #cloud-config on the first line"
    );
    let c = yaml(CLOUD_CONFIG);
    let units = c["coreos"]["units"].as_vec().expect("coreos.units");
    let find = |name: &str| {
        units
            .iter()
            .find(|u| u["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no unit {name}"))
    };
    let u = find(UNIT_NAME);
    assert_eq!(
        ystr(&u["content"], "content"),
        UNIT,
        "unit text, byte for byte"
    );
    assert_eq!(u["enable"].as_bool(), Some(true));
    assert_eq!(ystr(&u["command"], "command"), "start");
    let dropins = u["drop-ins"].as_vec().expect("drop-ins");
    assert_eq!(dropins.len(), 1);
    let dropin = ystr(&dropins[0]["content"], "drop-in");
    assert!(dropin.contains("Wants=dropfix-install.service\n"));
    assert!(dropin.contains("After=dropfix-install.service\n"));
    assert_dropin_runs_the_unit_command_from_opt_bin(dropin);
    let install = ystr(&find("dropfix-install.service")["content"], "install");
    assert!(install.contains(&format!("ConditionPathExists=!{OPT_BIN}\n")));
    assert!(install.contains("Before=dropfix-firstboot.service\n"));
    assert!(install.contains("sha256sum -c"), "the download is checked");
    assert!(
        exec_start(install)
            .last()
            .is_some_and(|l| l.ends_with(&format!(" {OPT_BIN}"))),
        "the binary appears at {OPT_BIN} only once complete"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gunzip(path: &Path) -> String {
    let out = run(Command::new("gzip").arg("-dc").arg(path));
    assert!(!out.is_empty(), "{} is empty", path.display());
    out
}

#[test]
fn deb_installs_binary_man_pages_completions_and_the_firstboot_unit() {
    let bin = support::dropfix_bin();
    let tmp = tempfile::tempdir().expect("tempdir");
    let deb = run(Command::new(top().join("packaging/deb/build.sh"))
        .arg(&bin)
        .arg(tmp.path().join("out")));
    let deb = PathBuf::from(deb.trim());
    assert_eq!(
        deb.file_name().and_then(|n| n.to_str()),
        Some(format!("dropfix_{}_amd64.deb", env!("CARGO_PKG_VERSION")).as_str())
    );
    let field = |f: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f));
    assert_eq!(field("Package").trim(), "dropfix");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture").trim(), "amd64");

    // Install into a scratch root.
    let root = tmp.path().join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    let at = |p: &str| root.join(p.trim_start_matches('/'));

    let installed = at("/usr/bin/dropfix");
    assert_eq!(
        fs::read(&installed).expect("binary"),
        fs::read(&bin).expect("built binary")
    );
    let mode = fs::metadata(&installed).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    let version = run(Command::new(&installed).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("dropfix {}", env!("CARGO_PKG_VERSION"))
    );

    // Man pages, generated from the clap definitions: the options are the real ones.
    let man = gunzip(&at("/usr/share/man/man1/dropfix.1.gz"));
    assert!(man.contains(".TH dropfix 1"), "{man}");
    let fix = gunzip(&at("/usr/share/man/man1/dropfix-fix.1.gz"));
    assert!(fix.contains(".TH dropfix-fix 1"), "{fix}");
    assert!(fix.contains(r"\-\-no\-restart"), "{fix}");
    assert!(fix.contains(r"\-\-dry\-run"), "{fix}");
    assert!(at("/usr/share/man/man1/dropfix-revert.1.gz").is_file());
    assert!(!man.contains("generate"), "the hidden subcommand stays out");
    assert!(!at("/usr/share/man/man1/dropfix-generate.1.gz").exists());

    let bash = fs::read_to_string(at("/usr/share/bash-completion/completions/dropfix")).unwrap();
    assert!(bash.contains("complete -F _dropfix"), "{bash}");
    assert!(bash.contains("--no-restart"));
    let zsh = fs::read_to_string(at("/usr/share/zsh/vendor-completions/_dropfix")).unwrap();
    assert!(zsh.starts_with("#compdef dropfix"), "{zsh}");
    let fish = fs::read_to_string(at("/usr/share/fish/vendor_completions.d/dropfix.fish")).unwrap();
    assert!(fish.contains("complete -c dropfix"), "{fish}");

    assert_eq!(
        fs::read_to_string(at("/lib/systemd/system/dropfix-firstboot.service")).unwrap(),
        UNIT,
        "the unit, byte for byte"
    );
    assert!(at("/usr/share/doc/dropfix/copyright").is_file());

    // Maintainer scripts: the unit is enabled on install, never started (no docker restart).
    let ctrl = tmp.path().join("ctrl");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
    let postinst = fs::read_to_string(ctrl.join("postinst")).expect("postinst");
    assert!(postinst.contains("deb-systemd-helper enable dropfix-firstboot.service"));
    assert!(!postinst.contains("start"), "{postinst}");
    for script in ["postinst", "postrm"] {
        let path = ctrl.join(script);
        let mode = fs::metadata(&path).expect(script).permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{script}");
        run(Command::new("sh").arg("-n").arg(&path));
    }
    let mut md5 = String::new();
    fs::File::open(ctrl.join("md5sums"))
        .and_then(|mut f| f.read_to_string(&mut md5))
        .expect("md5sums");
    assert!(md5.contains("  usr/bin/dropfix\n"), "{md5}");
}

/// The static release binary: what CoreOS gets (no package manager, no Python, no libc
/// promises). tests/run builds it (packaging/build-static.sh) and runs every live test with it
/// through DROPFIX_BIN; outside CI without DROPFIX_BIN this test builds it itself.
#[test]
fn static_release_binary_has_no_dynamic_dependencies() {
    let bin = match std::env::var_os("DROPFIX_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI runs tests/run, which sets DROPFIX_BIN to the static release build"
            );
            // Its own target directory: this `cargo test` holds the lock on the default one.
            let out = run(Command::new(top().join("packaging/build-static.sh"))
                .env("CARGO_TARGET_DIR", top().join("target/static-test")));
            PathBuf::from(out.trim())
        }
    };
    let ldd = Command::new("ldd").arg(&bin).output().expect("ldd");
    let says = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        says.contains("not a dynamic executable") || says.contains("statically linked"),
        "ldd {}: {says}",
        bin.display()
    );
    assert!(!says.contains(".so"), "{says}");
    let size = fs::metadata(&bin).expect("binary").len();
    eprintln!("{}: {says}; {size} bytes", bin.display());
    // It runs, and its help is the real one.
    let help = run(Command::new(&bin).arg("fix").arg("--help"));
    assert!(help.contains("--no-restart"));
}
