//! `dropfix doctor --format prometheus`: node_exporter textfile-collector metrics, read back
//! with a real Prometheus parser (prometheus_client's, from PyPI, through
//! tests/harness/promparse.py), offline on fixture roots and live through the shipped
//! packaging/dropfix-doctor.service on a broken and a fixed host.

mod common;
mod support;

use common::{run, Fixture, SLAVE_UNIT};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const DOCTOR_SERVICE: &str = include_str!("../packaging/dropfix-doctor.service");
const DOCTOR_TIMER: &str = include_str!("../packaging/dropfix-doctor.timer");
const PROM: &str = "/var/lib/node_exporter/textfile_collector/dropfix.prom";

/// Samples by name and labels (`name{k="v",...}` with labels sorted), as the parser read them.
type Samples = BTreeMap<String, f64>;

/// The Python with prometheus_client (tests/harness/prometheus-venv.sh makes it once).
fn parser_python() -> String {
    let script = common::top().join("tests/harness/prometheus-venv.sh");
    let out = Command::new(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs python3-venv and PyPI):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Parse exposition text with prometheus_client; every family must be a documented gauge.
fn parse(text: &str) -> Samples {
    use std::io::Write;
    let mut child = Command::new(parser_python())
        .arg(common::top().join("tests/harness/promparse.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promparse.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing to promparse.py");
    let out = child.wait_with_output().expect("promparse.py");
    assert!(
        out.status.success(),
        "prometheus_client rejects the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("promparse JSON");
    let mut samples = Samples::new();
    for f in v["families"].as_array().expect("families") {
        let name = f["name"].as_str().expect("name");
        assert!(name.starts_with("dropfix_"), "{name}");
        assert_eq!(f["type"], "gauge", "{name}");
        for s in f["samples"].as_array().expect("samples") {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(s["labels"].clone()).expect("labels");
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = if inner.is_empty() {
                s["name"].as_str().expect("sample name").to_string()
            } else {
                format!("{}{{{}}}", s["name"].as_str().unwrap(), inner.join(","))
            };
            let value = s["value"].as_f64().expect("value");
            assert!(
                samples.insert(key.clone(), value).is_none(),
                "{key} twice:\n{text}"
            );
        }
    }
    samples
}

fn get(s: &Samples, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have {:#?}", s.keys()))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

#[test]
fn offline_metrics_of_a_broken_and_a_fixed_root_parse_and_differ() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    let before = now();
    let r = run(&["--root", f.root_arg(), "doctor", "--format", "prometheus"]);
    r.expect_code(3);
    let broken = parse(&r.stdout);
    assert_eq!(get(&broken, "dropfix_doctor_success"), 1.0);
    assert_eq!(get(&broken, "dropfix_healthy"), 0.0);
    assert_eq!(
        get(
            &broken,
            r#"dropfix_findings{id="mount-flags",status="problem",unit="docker.service"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &broken,
            r#"dropfix_findings{id="mount-flags",status="ok",unit="docker.service"}"#
        ),
        0.0
    );
    assert_eq!(
        get(&broken, r#"dropfix_restart_pending{unit="docker.service"}"#),
        0.0
    );
    let t = get(&broken, "dropfix_last_run_timestamp_seconds");
    assert!(t >= before && t <= now() + 1.0, "{t}");
    assert_eq!(
        get(
            &broken,
            &format!(
                r#"dropfix_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    // Offline nothing looked at namespace files: no series rather than zeros that say "none".
    assert!(
        !broken
            .keys()
            .any(|k| k.starts_with("dropfix_netns_entries")),
        "{broken:#?}"
    );

    run(&["--root", f.root_arg(), "fix", "--systemd-version", "252"]).expect_code(0);
    let r = run(&["--root", f.root_arg(), "doctor", "--format", "prometheus"]);
    r.expect_code(0);
    let fixed = parse(&r.stdout);
    assert_eq!(get(&fixed, "dropfix_healthy"), 1.0);
    assert_eq!(
        get(
            &fixed,
            r#"dropfix_findings{id="mount-flags",status="problem",unit="docker.service"}"#
        ),
        0.0
    );
    assert_eq!(
        get(
            &fixed,
            r#"dropfix_findings{id="mount-flags",status="ok",unit="docker.service"}"#
        ),
        1.0
    );
}

#[test]
fn output_file_is_written_whole_with_nothing_left_beside_it() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dropfix.prom");
    std::fs::write(&out, "old\n").unwrap();
    let r = run(&[
        "--root",
        f.root_arg(),
        "doctor",
        "--format",
        "prometheus",
        "--output",
        out.to_str().unwrap(),
    ]);
    r.expect_code(3);
    assert_eq!(r.stdout, "", "the report goes to the file only");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(get(&parse(&text), "dropfix_healthy"), 0.0);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["dropfix.prom"], "no temporary file left");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o644,
        "node_exporter runs as another user and reads it"
    );
}

#[test]
fn failed_check_writes_success_zero_so_old_metrics_do_not_linger() {
    let f = Fixture::new(); // no docker.service: doctor cannot check
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dropfix.prom");
    std::fs::write(&out, "dropfix_healthy 1\n").unwrap();
    let r = run(&[
        "--root",
        f.root_arg(),
        "doctor",
        "--format",
        "prometheus",
        "--output",
        out.to_str().unwrap(),
    ]);
    let line = r.expect_one_line_error();
    assert!(line.contains("docker.service"), "{line}");
    let s = parse(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(get(&s, "dropfix_doctor_success"), 0.0);
    assert!(!s.contains_key("dropfix_healthy"), "{s:#?}");
}

#[test]
fn output_into_a_missing_directory_names_the_file() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    let r = run(&[
        "--root",
        f.root_arg(),
        "doctor",
        "--output",
        "/nonexistent-dir/dropfix.prom",
    ]);
    let line = r.expect_one_line_error();
    assert!(
        line.contains("--output /nonexistent-dir/dropfix.prom"),
        "{line}"
    );
}

#[test]
fn prometheus_for_a_command_other_than_doctor_is_a_usage_error() {
    let f = Fixture::with_docker(SLAVE_UNIT);
    let before = common::snapshot(f.path());
    for cmd in ["fix", "revert", "scan"] {
        let r = run(&["--root", f.root_arg(), cmd, "--format", "prometheus"]);
        r.expect_code(2);
        assert_eq!(r.stdout, "");
        assert_eq!(r.stderr.lines().count(), 1, "{r}");
        assert!(
            r.stderr.contains("only `dropfix doctor` writes metrics"),
            "{r}"
        );
    }
    assert_eq!(common::snapshot(f.path()), before, "nothing written");
}

// ------------------------------------------------------------------------------------------
// Live: the shipped units on a real systemd.
// ------------------------------------------------------------------------------------------

fn doctor_setup() -> support::Setup {
    support::Setup::new()
        .install_binary(support::dropfix_bin(), "/usr/bin/dropfix")
        .unit("dropfix-doctor.service", DOCTOR_SERVICE)
        .unit("dropfix-doctor.timer", DOCTOR_TIMER)
}

/// Start the shipped service once; it succeeds (SuccessExitStatus=3 too); the metrics file.
fn run_doctor_service(c: &support::Container) -> Samples {
    c.sh_ok("systemctl start dropfix-doctor.service");
    let p = |name: &str| {
        c.property(
            "dropfix-doctor.service",
            "org.freedesktop.systemd1.Service",
            name,
        )
    };
    assert_eq!(p("Result"), "success");
    let text = std::fs::read_to_string(c.path(PROM)).expect("the metrics file");
    let names = c.sh_ok("ls -A /var/lib/node_exporter/textfile_collector");
    assert_eq!(names.trim(), "dropfix.prom", "no temporary file left");
    let s = parse(&text);
    s.get("dropfix_healthy")
        .map(|_| ())
        .expect("dropfix_healthy");
    s
}

#[test]
fn live_doctor_service_reports_a_broken_host_then_a_fixed_one() {
    let c = support::Container::boot("metrics-live", &doctor_setup());
    // The timer is valid and can be enabled as the packaging README says.
    c.sh_ok("systemctl enable --now dropfix-doctor.timer");
    assert_eq!(
        c.property(
            "dropfix-doctor.timer",
            "org.freedesktop.systemd1.Unit",
            "ActiveState"
        ),
        "active"
    );

    let broken = run_doctor_service(&c);
    assert_eq!(
        c.property(
            "dropfix-doctor.service",
            "org.freedesktop.systemd1.Service",
            "ExecMainStatus"
        ),
        "3",
        "doctor found the problem, and the unit did not fail for it"
    );
    assert_eq!(get(&broken, "dropfix_healthy"), 0.0);
    assert_eq!(get(&broken, r#"dropfix_systemd_info{version="252"}"#), 1.0);
    assert_eq!(
        get(
            &broken,
            r#"dropfix_findings{id="mount-flags",status="problem",unit="docker.service"}"#
        ),
        1.0
    );
    // The stand-in daemon's namespace file: a plain file in PID 1's view, held by dockerd.
    assert_eq!(
        get(
            &broken,
            r#"dropfix_netns_entries{class="held",directory="/run/docker/netns"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &broken,
            r#"dropfix_netns_entries{class="enterable",directory="/run/docker/netns"}"#
        ),
        0.0
    );

    c.sh_ok("dropfix fix --yes </dev/null");
    let fixed = run_doctor_service(&c);
    assert_eq!(
        c.property(
            "dropfix-doctor.service",
            "org.freedesktop.systemd1.Service",
            "ExecMainStatus"
        ),
        "0"
    );
    assert_eq!(get(&fixed, "dropfix_healthy"), 1.0);
    assert_eq!(
        get(
            &fixed,
            r#"dropfix_findings{id="mount-flags",status="problem",unit="docker.service"}"#
        ),
        0.0
    );
    assert_eq!(
        get(
            &fixed,
            r#"dropfix_netns_entries{class="enterable",directory="/run/docker/netns"}"#
        ),
        1.0
    );
    assert_eq!(
        get(
            &fixed,
            r#"dropfix_netns_entries{class="held",directory="/run/docker/netns"}"#
        ),
        0.0
    );
    assert_eq!(
        get(&fixed, r#"dropfix_restart_pending{unit="docker.service"}"#),
        0.0
    );
    assert!(
        get(&fixed, "dropfix_last_run_timestamp_seconds")
            >= get(&broken, "dropfix_last_run_timestamp_seconds")
    );
}
