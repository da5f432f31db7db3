//! `dropfix show`, `set` and `unset`: offline on fixture roots, and live against a real systemd
//! in a throwaway container (see tests/support), including every unit of the shared corpus.

mod support;

use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Container, Setup};

const BIN: &str = env!("CARGO_BIN_EXE_dropfix");
const OWN: &str = "/etc/systemd/system/docker.service.d/zz-dropfix-settings.conf";

fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

fn fixture(unit: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("usr/lib/systemd/system");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("docker.service"), unit).unwrap();
    t
}

fn listing(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

const VENDOR: &str = "[Service]\nExecStart=/bin/true\nEnvironment=VENDOR=1\nLimitNOFILE=1048576\n";

#[test]
fn show_names_the_file_and_line_that_decided_each_value_and_what_it_overrode() {
    let t = fixture(VENDOR);
    let dd = t.path().join("etc/systemd/system/docker.service.d");
    fs::create_dir_all(&dd).unwrap();
    fs::write(
        dd.join("10-limits.conf"),
        "[Service]\nLimitNOFILE=4096\nEnvironment=\nEnvironment=X=1\n",
    )
    .unwrap();
    fs::write(dd.join("README"), "not read").unwrap();
    let (code, out, err) = run(t.path(), &["show", "docker", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let get = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .unwrap()
            .clone()
    };
    let l = get("LimitNOFILE");
    assert_eq!(l["value"], "4096");
    assert_eq!(
        l["source"]["path"],
        "/etc/systemd/system/docker.service.d/10-limits.conf"
    );
    assert_eq!(l["source"]["line"], 2);
    assert_eq!(l["overridden"][0]["value"], "1048576");
    assert_eq!(l["overridden"][0]["line"], 4);
    let e = get("Environment");
    assert_eq!(e["value"], "X=1");
    assert_eq!(e["overridden"][0]["value"], "VENDOR=1");
    let skipped = v["dropins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["status"] == "skipped")
        .unwrap();
    assert!(skipped["path"].as_str().unwrap().ends_with("README"));
    // Only the keys asked for.
    let (_, out, _) = run(
        t.path(),
        &["show", "docker", "Service.LimitNOFILE", "--format", "json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["settings"].as_array().unwrap().len(), 1);
}

#[test]
fn set_environment_twice_appends_once_and_reset_clears_the_list_first() {
    let t = fixture(VENDOR);
    for _ in 0..2 {
        let (code, _, err) = run(t.path(), &["set", "docker", "Service.Environment=A=1"]);
        assert_eq!(code, 0, "{err}");
    }
    let own = fs::read_to_string(t.path().join(OWN.trim_start_matches('/'))).unwrap();
    assert_eq!(own.matches("Environment=A=1").count(), 1, "{own}");
    let (_, out, _) = run(
        t.path(),
        &["show", "docker", "Environment", "--format", "json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["settings"][0]["value"], "VENDOR=1 A=1");
    let (code, _, _) = run(
        t.path(),
        &["set", "docker", "--reset", "Service.Environment=B=2"],
    );
    assert_eq!(code, 0);
    let own = fs::read_to_string(t.path().join(OWN.trim_start_matches('/'))).unwrap();
    assert!(
        own.ends_with("[Service]\nEnvironment=\nEnvironment=B=2\n"),
        "{own}"
    );
    let (_, out, _) = run(
        t.path(),
        &["show", "docker", "Environment", "--format", "json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["settings"][0]["value"], "B=2");
}

#[test]
fn unset_removes_dropfix_assignment_and_revert_restores_the_tree() {
    let t = fixture(VENDOR);
    let before = listing(t.path());
    assert_eq!(
        run(
            t.path(),
            &[
                "set",
                "docker",
                "Service.LimitNOFILE=4096",
                "Service.PrivateTmp=yes"
            ]
        )
        .0,
        0
    );
    assert_eq!(
        run(
            t.path(),
            &["set", "docker", "Service.LimitNOFILE", "--check"]
        )
        .0,
        1,
        "unset syntax is refused by set"
    );
    let (code, out, _) = run(
        t.path(),
        &["unset", "docker", "Service.LimitNOFILE", "--check"],
    );
    assert_eq!(code, 3, "{out}");
    assert_eq!(
        run(t.path(), &["unset", "docker", "Service.LimitNOFILE"]).0,
        0
    );
    let own = fs::read_to_string(t.path().join(OWN.trim_start_matches('/'))).unwrap();
    assert!(
        !own.contains("LimitNOFILE") && own.contains("PrivateTmp=yes"),
        "{own}"
    );
    assert_eq!(
        run(t.path(), &["unset", "docker", "Service.PrivateTmp"]).0,
        0
    );
    assert!(
        !t.path().join(OWN.trim_start_matches('/')).exists(),
        "empty drop-in removed"
    );
    assert_eq!(
        run(t.path(), &["set", "docker", "Service.LimitNOFILE=4096"]).0,
        0
    );
    assert_eq!(run(t.path(), &["revert"]).0, 0);
    assert_eq!(listing(t.path()), before);
}

#[test]
fn full_copy_neutralising_dropfix_settings_keeps_every_other_setting() {
    let t = fixture(VENDOR);
    let args = [
        "set",
        "docker",
        "Service.LimitNOFILE=4096",
        "Service.MountFlags=slave",
        "Service.LimitNPROC=100",
    ];
    assert_eq!(run(t.path(), &args).0, 0);
    let (code, out, err) = run(t.path(), &["fix", "--systemd-version", "231"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let own = fs::read_to_string(t.path().join(OWN.trim_start_matches('/'))).unwrap();
    assert!(own.contains("[Service]\nLimitNOFILE=4096\n"), "{own}");
    assert!(
        own.contains("#MountFlags=slave") && own.contains("LimitNPROC=100"),
        "{own}"
    );
    let (_, out, _) = run(t.path(), &["show", "docker", "--format", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let get = |k: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .map(|s| s["value"].clone())
    };
    assert_eq!(get("LimitNOFILE").unwrap(), "4096");
    assert_eq!(get("LimitNPROC").unwrap(), "100");
    assert_eq!(
        get("MountFlags"),
        None,
        "MountFlags is commented out everywhere"
    );
}

#[test]
fn revert_after_set_then_unset_has_nothing_to_undo() {
    let t = fixture(VENDOR);
    let before = listing(t.path());
    assert_eq!(
        run(t.path(), &["set", "docker", "Service.LimitNOFILE=4096"]).0,
        0
    );
    assert_eq!(
        run(t.path(), &["unset", "docker", "Service.LimitNOFILE"]).0,
        0
    );
    let (code, out, _) = run(t.path(), &["revert", "--format", "json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(listing(t.path()), before);
}

#[test]
fn link_ip_netns_on_an_image_root_writes_only_the_tmpfiles_line() {
    let t = fixture("[Service]\nExecStart=/bin/true\nMountFlags=slave\n");
    fs::create_dir_all(t.path().join("run/netns/blue")).unwrap();
    let (code, out, err) = run(
        t.path(),
        &["fix", "--systemd-version", "252", "--link-ip-netns"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        t.path().join("run/netns/blue").exists(),
        "the image's /run is left alone"
    );
    let conf = fs::read_to_string(t.path().join("etc/tmpfiles.d/dropfix-ip-netns.conf")).unwrap();
    assert!(conf.contains("L /run/netns - - - - /run/docker/netns"));
}

#[test]
fn unknown_key_bad_boolean_and_bad_enum_exit_1_and_write_nothing() {
    let t = fixture(VENDOR);
    let before = listing(t.path());
    for (arg, says) in [
        ("Service.LimitNOFLIE=4096", "knows no LimitNOFLIE="),
        ("Service.PrivateTmp=perhaps", "takes a boolean"),
        (
            "Service.MountFlags=rshared",
            "one of shared, slave, private",
        ),
        ("Service.LimitNOFILE=lots", "takes a number"),
        ("Unit.ListenStream=80", "knows no ListenStream="),
        ("Install.WantedBy=x.target", "ignores [Install] in drop-ins"),
        ("NoSection=1", "expected Section.Key"),
    ] {
        let (code, out, err) = run(t.path(), &["set", "docker", arg]);
        assert_eq!(code, 1, "{arg}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{arg}: {err}");
        assert!(
            err.contains(says) && err.contains(arg.split('=').next().unwrap()),
            "{arg}: {err}"
        );
    }
    assert_eq!(listing(t.path()), before);
}

fn live_setup() -> Setup {
    Setup::new().install_binary(support::dropfix_bin(), "/usr/local/bin/dropfix")
}

fn dropfix(c: &Container, args: &str) -> (i32, String, String) {
    let out = c.sh(&format!("dropfix {args} </dev/null"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

fn starts(c: &Container) -> usize {
    fs::read_to_string(c.path("/run/fake-dockerd.starts"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn live_set_limitnofile_with_restart_then_revert_restores_the_old_value() {
    let c = Container::boot("set-limit", &live_setup());
    let old = c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "LimitNOFILE",
    );
    assert_ne!(old, "4096");
    let (code, out, err) = dropfix(
        &c,
        "set docker.service Service.LimitNOFILE=4096 --restart --yes --format json",
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["restarted"], true);
    assert_eq!(v["job_result"], "done");
    assert!(
        v["verify"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["property"] == "LimitNOFILE" && x["agrees"] == true),
        "{v}"
    );
    assert_eq!(
        c.property(
            "docker.service",
            "org.freedesktop.systemd1.Service",
            "LimitNOFILE"
        ),
        "4096"
    );
    assert_eq!(starts(&c), 2, "restarted once");
    // The running process has the new limit.
    let pid = c.property(
        "docker.service",
        "org.freedesktop.systemd1.Service",
        "MainPID",
    );
    let limits = fs::read_to_string(c.path(&format!("/proc/{pid}/limits"))).unwrap_or_default();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains("4096")),
        "{limits}"
    );
    // Without --restart: written and reloaded, restart pending.
    let (code, out, _) = dropfix(&c, "set docker.service Service.LimitNOFILE=2048");
    assert_eq!(code, 0);
    assert!(out.contains("still to do: restart docker.service"), "{out}");
    assert_eq!(starts(&c), 2);
    let (code, _, err) = dropfix(&c, "revert --yes");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        c.property(
            "docker.service",
            "org.freedesktop.systemd1.Service",
            "LimitNOFILE"
        ),
        old
    );
    assert!(!c.path(OWN).exists());
}

#[test]
fn live_set_environment_appends_once_and_reset_clears_as_systemd_shows() {
    let unit = support::DOCKER_SERVICE.replace("[Service]\n", "[Service]\nEnvironment=VENDOR=1\n");
    let c = Container::boot("set-env", &live_setup().docker_service(&unit));
    let env = || {
        c.property(
            "docker.service",
            "org.freedesktop.systemd1.Service",
            "Environment",
        )
    };
    assert_eq!(env(), "1 \"VENDOR=1\"");
    for _ in 0..2 {
        assert_eq!(dropfix(&c, "set docker Service.Environment=A=1").0, 0);
    }
    assert_eq!(env(), "2 \"VENDOR=1\" \"A=1\"");
    assert_eq!(
        dropfix(&c, "set docker --reset Service.Environment=B=2").0,
        0
    );
    assert_eq!(env(), "1 \"B=2\"");
    let (code, out, _) = dropfix(&c, "show docker Service.Environment --format json");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["settings"][0]["systemd"]["agrees"], true, "{v}");
}

#[test]
fn live_bad_input_exits_1_and_changes_nothing() {
    let c = Container::boot("set-bad", &live_setup());
    for arg in [
        "Service.LimitNOFLIE=1",
        "Service.PrivateTmp=perhaps",
        "Service.MountFlags=rshared",
    ] {
        let (code, _, err) = dropfix(&c, &format!("set docker {arg} --restart --yes"));
        assert_eq!(code, 1, "{arg}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(!c.path("/etc/systemd/system/docker.service.d").exists());
    assert_eq!(starts(&c), 1);
}

/// Every corpus unit, loaded by a real systemd, against what `dropfix show` says about it.
#[test]
fn show_on_every_corpus_unit_matches_what_systemd_loads() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/units");
    let mut files = Vec::new();
    let mut stack = vec![corpus.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut setup = live_setup().no_docker();
    let mut names = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy();
        if name.contains(".conf@") {
            continue; // drop-ins: added to units below
        }
        let unit = format!(
            "corpus{i}.{}",
            if name.contains(".socket") {
                "socket"
            } else {
                "service"
            }
        );
        let text = String::from_utf8_lossy(&fs::read(f).unwrap()).into_owned();
        setup = setup.unit(&unit, &text);
        names.push((unit, f.clone()));
    }
    // A few drop-ins on top: the corpus ones, and resets.
    let dropins: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.to_string_lossy().contains(".conf@"))
        .collect();
    for (j, (unit, _)) in names
        .iter()
        .enumerate()
        .filter(|(_, (u, _))| u.ends_with(".service"))
        .take(dropins.len())
    {
        let text =
            String::from_utf8_lossy(&fs::read(dropins[j % dropins.len()]).unwrap()).into_owned();
        setup = setup.usr_file(
            &format!("/usr/lib/systemd/system/{unit}.d/50-corpus.conf"),
            &text,
        );
        setup = setup.usr_file(
            &format!("/usr/lib/systemd/system/{unit}.d/60-reset.conf"),
            "[Service]\nEnvironment=\nEnvironment=RESET=1\nLimitNOFILE=4096\n",
        );
    }
    let c = Container::boot("show-corpus", &setup);
    let mut problems = Vec::new();
    let (mut compared, mut loaded) = (0, 0);
    for (unit, file) in &names {
        let state = c.property(unit, "org.freedesktop.systemd1.Unit", "LoadState");
        if state != "loaded" {
            continue; // systemd refused the file (e.g. @placeholders@ of a .in template)
        }
        loaded += 1;
        let (code, out, err) = dropfix(&c, &format!("show {unit} --format json"));
        if code != 0 {
            problems.push(format!("{unit} ({}): exit {code}: {err}", file.display()));
            continue;
        }
        let v: Value = serde_json::from_str(&out).unwrap();
        for s in v["settings"].as_array().unwrap() {
            match s["systemd"]["agrees"].as_bool() {
                Some(true) => compared += 1,
                Some(false) => problems.push(format!(
                    "{unit} ({}): {}={} but systemd reports {}={}",
                    file.display(),
                    s["key"].as_str().unwrap(),
                    s["value"].as_str().unwrap(),
                    s["systemd"]["property"].as_str().unwrap(),
                    s["systemd"]["value"].as_str().unwrap()
                )),
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagreement(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(loaded >= 40, "only {loaded} corpus units loaded");
    assert!(compared >= 200, "only {compared} settings compared");
}
