//! The Ansible module: Ansible's binary-module protocol (a JSON arguments file in, one JSON
//! result on stdout) over `dropfix fix|revert --format json`, run again without a shell.
//!
//! Options are parsed strictly: an unknown key (other than Ansible's own `_ansible_*`), a wrong
//! type or a value outside the choices fails the task and runs nothing. A typo must never turn
//! into the opposite action, a restart nobody asked for, or a run on the live host.

use crate::plan::Strategy;
use crate::unitname::UnitName;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `state`: what the play wants docker.service to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// MountFlags removed: `dropfix fix`.
    Fixed,
    /// dropfix's changes undone: `dropfix revert`.
    Reverted,
}

/// The module's options, checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `state` (default fixed).
    pub state: State,
    /// `units` (default: dropfix's own choice).
    pub units: Vec<UnitName>,
    /// `restart` (default true): `--yes`, else `--no-restart`.
    pub restart: bool,
    /// `root`: work offline on this directory.
    pub root: Option<PathBuf>,
    /// `systemd_version` (state=fixed only).
    pub systemd_version: Option<u32>,
    /// `strategy` (state=fixed only).
    pub strategy: Option<Strategy>,
    /// `dropfix`: the binary to run instead of this one.
    pub dropfix: Option<PathBuf>,
    /// `_ansible_check_mode`: `--dry-run`.
    pub check_mode: bool,
    /// `_ansible_diff`: return before/after texts.
    pub diff: bool,
}

/// The options as the play writes them. `deny_unknown_fields` is the point: `stat` or `resart`
/// is refused by name instead of being dropped. Values stay JSON here; [`parse`] checks each
/// one so that the message names the option and what it accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    state: Option<Value>,
    units: Option<Value>,
    restart: Option<Value>,
    root: Option<Value>,
    systemd_version: Option<Value>,
    strategy: Option<Value>,
    dropfix: Option<Value>,
}

/// A JSON object's members in order, with a repeated key refused (serde_json's `Map` would
/// keep the last one silently).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("option {k} is given twice")));
                    }
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse and check the arguments file's text. The error is the one-line `msg` of the failed
/// result.
pub fn parse(text: &str) -> Result<Options, String> {
    let Members(members) = serde_json::from_str(text)
        .map_err(|e| format!("the arguments file is not one JSON object of options: {e}"))?;
    let mut own = Map::new();
    let mut ansible = Map::new();
    for (k, v) in members {
        if k.starts_with("_ansible_") {
            ansible.insert(k, v);
        } else {
            own.insert(k, v);
        }
    }
    let raw = Raw::deserialize(Value::Object(own)).map_err(|e| format!("{e}"))?;
    let given = |v: Option<Value>| v.filter(|v| !v.is_null());

    let state = match given(raw.state) {
        None => State::Fixed,
        Some(v) => match v.as_str() {
            Some("fixed") => State::Fixed,
            Some("reverted") => State::Reverted,
            _ => return Err(format!("state: expected fixed or reverted, got {v}")),
        },
    };
    let units = given(raw.units).map(units).transpose()?.unwrap_or_default();
    let restart = given(raw.restart)
        .map(|v| boolean("restart", &v))
        .transpose()?
        .unwrap_or(true);
    let root = given(raw.root).map(|v| path("root", &v)).transpose()?;
    let systemd_version = given(raw.systemd_version).map(version).transpose()?;
    let strategy = match given(raw.strategy) {
        None => None,
        Some(v) => Some(match v.as_str() {
            Some("drop-in") => Strategy::DropIn,
            Some("full-copy") => Strategy::FullCopy,
            _ => return Err(format!("strategy: expected drop-in or full-copy, got {v}")),
        }),
    };
    let dropfix = given(raw.dropfix)
        .map(|v| path("dropfix", &v))
        .transpose()?;
    if state == State::Reverted {
        if systemd_version.is_some() {
            return Err("systemd_version: applies to state=fixed only (revert restores what dropfix wrote, whatever the version)".into());
        }
        if strategy.is_some() {
            return Err("strategy: applies to state=fixed only (revert restores what dropfix wrote, whatever the strategy)".into());
        }
    }
    let flag = |k: &str| -> Result<bool, String> {
        match ansible.get(k).filter(|v| !v.is_null()) {
            None => Ok(false),
            Some(v) => boolean(k, v),
        }
    };
    Ok(Options {
        state,
        units,
        restart,
        root,
        systemd_version,
        strategy,
        dropfix,
        check_mode: flag("_ansible_check_mode")?,
        diff: flag("_ansible_diff")?,
    })
}

/// A boolean the way Ansible writes one: JSON true/false, 1/0, or (from a template) one of
/// yes/no, true/false, on/off, 1/0 in any case.
fn boolean(key: &str, v: &Value) -> Result<bool, String> {
    let b = match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Some(true),
            "no" | "false" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    };
    b.ok_or_else(|| format!("{key}: expected a boolean (true/false, yes/no, on/off, 1/0), got {v}"))
}

/// `units`: a list of unit names, or one string of names separated by spaces.
fn units(v: Value) -> Result<Vec<UnitName>, String> {
    let names: Vec<String> = match &v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("units: expected a list of unit names, got {v}"))?,
        _ => {
            return Err(format!(
                "units: expected a list of unit names or one space-separated string, got {v}"
            ))
        }
    };
    names
        .iter()
        .map(|n| UnitName::from_user(n).map_err(|e| format!("units: {e}")))
        .collect()
}

/// An absolute path; any character but NUL (which no command line can carry).
fn path(key: &str, v: &Value) -> Result<PathBuf, String> {
    let Some(s) = v.as_str() else {
        return Err(format!("{key}: expected an absolute path, got {v}"));
    };
    if !s.starts_with('/') || s.contains('\0') {
        return Err(format!(
            "{key}: expected an absolute path (starting with /, no NUL), got {v}"
        ));
    }
    Ok(PathBuf::from(s))
}

/// `systemd_version`: a positive integer, or a string of digits (templated values are strings).
fn version(v: Value) -> Result<u32, String> {
    let n = match &v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    match n {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "systemd_version: expected a positive integer (e.g. 231), got {v}"
        )),
    }
}

/// The dropfix command line (after the binary) for these options.
pub fn argv(o: &Options) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    push(match o.state {
        State::Fixed => "fix",
        State::Reverted => "revert",
    });
    for s in ["--format", "json", "--color", "never"] {
        push(s);
    }
    if o.check_mode {
        push("--dry-run");
    } else if o.restart {
        push("--yes");
    } else {
        push("--no-restart");
    }
    if o.diff {
        push("--with-contents");
    }
    if let Some(n) = o.systemd_version {
        push("--systemd-version");
        push(&n.to_string());
    }
    if let Some(s) = o.strategy {
        push("--strategy");
        push(s.as_str());
    }
    if let Some(r) = &o.root {
        a.push("--root".into());
        a.push(r.into());
    }
    if !o.units.is_empty() {
        // A valid unit name may start with '-' (-.mount): never let one read as an option.
        a.push("--".into());
        a.extend(o.units.iter().map(|u| OsString::from(u.as_str())));
    }
    a
}

/// How the dropfix run ended.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Exit status; None when a signal ended it.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// The module's result for a finished run, and whether it failed.
pub fn result(o: &Options, bin: &Path, args: &[OsString], ran: &Ran) -> (Value, bool) {
    let sub = args[0].to_string_lossy().into_owned();
    let stderr = String::from_utf8_lossy(&ran.stderr).into_owned();
    let report: Option<Value> = serde_json::from_slice::<Value>(&ran.stdout)
        .ok()
        .filter(Value::is_object);
    let error = report
        .as_ref()
        .and_then(|r| r.get("error"))
        .filter(|e| !e.is_null());
    let failed = !matches!(ran.code, Some(0) | Some(crate::app::EXIT_PENDING)) || error.is_some();
    let changed = report.as_ref().is_some_and(|r| changed(r, o.check_mode));
    let last_line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim);
    let msg = if failed {
        let why = error
            .and_then(|e| e.get("message").and_then(Value::as_str).map(str::to_string))
            .or_else(|| last_line.map(str::to_string))
            .unwrap_or_else(|| "no message".into());
        let advice: Vec<&str> = report
            .as_ref()
            .and_then(|r| r.get("advice"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match ran.code {
            Some(crate::app::EXIT_UNREACHABLE) => format!(
                "dropfix {sub}: the fix is in force, but network namespaces are still held in another mount namespace and cannot be entered from the host{}",
                if advice.is_empty() {
                    String::new()
                } else {
                    format!("; run: {}", advice.join("; "))
                }
            ),
            Some(c) => format!("dropfix {sub} exited with status {c}: {why}"),
            None => format!("dropfix {sub} was ended by a signal: {why}"),
        }
    } else {
        let what = match (changed, o.check_mode) {
            (true, true) => "would change",
            (true, false) => "changed",
            (false, _) => "nothing to do",
        };
        match last_line {
            Some(l) => format!("dropfix {sub}: {what} ({l})"),
            None => format!("dropfix {sub}: {what}"),
        }
    };
    let mut cmd = vec![bin.to_string_lossy().into_owned()];
    cmd.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let mut out = json!({
        "changed": changed,
        "failed": failed,
        "msg": msg,
        "rc": ran.code.unwrap_or(-1),
        "cmd": cmd,
        "stderr": stderr,
        "dropfix": report.clone().unwrap_or(Value::Null),
    });
    if o.diff {
        if let Some(r) = &report {
            out["diff"] = Value::Array(diff(r));
        }
    }
    (out, failed)
}

/// Every file report in a fix or revert report.
fn file_reports(report: &Value) -> Vec<&Value> {
    let units = report["units"].as_array().into_iter().flatten();
    units
        .chain(std::iter::once(report))
        .filter_map(|x| x["files"].as_array())
        .flatten()
        .filter(|f| f["action"].is_string())
        .collect()
}

/// Ansible's `changed`: a file changed (or would), or a unit was restarted (`fix`: true,
/// `revert`: a non-empty list), or in check mode a live run would restart one. A reload alone is
/// not a change.
fn changed(report: &Value, check_mode: bool) -> bool {
    let restarted = match &report["restarted"] {
        Value::Bool(b) => *b,
        Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    let restart_due = check_mode
        && report["actions"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|s| s.starts_with("restart ")))
        });
    !file_reports(report).is_empty() || restarted || restart_due
}

/// Ansible's diff-mode entries: one a changed file, with the whole texts when dropfix gave them
/// (`--with-contents`), else its unified diff as `prepared`.
fn diff(report: &Value) -> Vec<Value> {
    let root = report["root"].as_str().unwrap_or("/").trim_end_matches('/');
    file_reports(report)
        .into_iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or("");
            let header = format!("{root}{path}");
            match (f["before"].as_str(), f["after"].as_str()) {
                (Some(before), Some(after)) => json!({
                    "before_header": header,
                    "after_header": header,
                    "before": before,
                    "after": after,
                }),
                _ => json!({ "prepared": f["diff"].as_str().unwrap_or("") }),
            }
        })
        .collect()
}

/// The failed result for arguments that are wrong or a dropfix that cannot run: nothing ran.
pub fn refusal(msg: &str) -> Value {
    json!({ "failed": true, "changed": false, "msg": msg })
}

/// The binary to run: this one, unless the `dropfix` option names another file.
fn binary(o: &Options) -> Result<PathBuf, String> {
    let me = std::env::current_exe()
        .map_err(|e| format!("dropfix: cannot tell where this binary is: {e}"))?;
    let Some(other) = &o.dropfix else {
        return Ok(me);
    };
    match (std::fs::canonicalize(other), std::fs::canonicalize(&me)) {
        (Ok(a), Ok(b)) if a == b => Ok(me),
        (Ok(_), _) => Ok(other.clone()),
        (Err(e), _) => Err(format!("dropfix: {}: {e}", other.display())),
    }
}

/// Check the options, run dropfix, build the result.
fn module(args_file: &Path) -> (Value, bool) {
    let text = match std::fs::read_to_string(args_file) {
        Ok(t) => t,
        Err(e) => {
            return (
                refusal(&format!(
                    "cannot read the arguments file {}: {e}",
                    args_file.display()
                )),
                true,
            )
        }
    };
    let o = match parse(&text) {
        Ok(o) => o,
        Err(msg) => return (refusal(&msg), true),
    };
    let bin = match binary(&o) {
        Ok(b) => b,
        Err(msg) => return (refusal(&msg), true),
    };
    let args = argv(&o);
    let out = Command::new(&bin).args(&args).stdin(Stdio::null()).output();
    match out {
        Ok(out) => {
            let ran = Ran {
                code: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            };
            result(&o, &bin, &args, &ran)
        }
        Err(e) => (
            refusal(&format!("dropfix: cannot run {}: {e}", bin.display())),
            true,
        ),
    }
}

/// `dropfix ansible-module ARGS_FILE`: print one JSON result line; exit status 1 when failed.
pub fn run(args_file: &Path) -> i32 {
    let (value, failed) = module(args_file);
    let mut line = value.to_string();
    line.push('\n');
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return 1;
    }
    i32::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &str) -> String {
        match parse(args) {
            Ok(o) => panic!("{args} was accepted: {o:?}"),
            Err(msg) => msg,
        }
    }

    fn strs(a: &[OsString]) -> Vec<&str> {
        a.iter().map(|s| s.to_str().expect("UTF-8")).collect()
    }

    fn refused_naming(args: &str, option: &str, allowed: &[&str]) {
        let msg = refused(args);
        assert!(msg.contains(option), "{args}: {msg} does not name {option}");
        for a in allowed {
            assert!(msg.contains(a), "{args}: {msg} does not say {a}");
        }
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn typo_in_state_is_refused_by_name_not_run_as_fix() {
        refused_naming(r#"{"stat": "reverted"}"#, "stat", &["state", "restart"]);
    }

    #[test]
    fn typo_in_restart_is_refused_not_run_with_yes() {
        refused_naming(r#"{"resart": false}"#, "resart", &["restart"]);
    }

    #[test]
    fn restart_outside_the_booleans_is_refused_not_read_as_false() {
        for v in [r#""maybe""#, r#""""#, "2", "-1", r#"["yes"]"#, "0.5"] {
            let args = format!(r#"{{"restart": {v}}}"#);
            if serde_json::from_str::<Value>(&args).is_err() {
                assert!(parse(&args).is_err(), "{args}");
                continue;
            }
            refused_naming(&args, "restart", &["true/false", "yes/no"]);
        }
    }

    #[test]
    fn restart_takes_json_booleans_and_ansibles_boolean_strings() {
        for (v, want) in [
            ("true", true),
            ("false", false),
            ("1", true),
            ("0", false),
            (r#""yes""#, true),
            (r#""No""#, false),
            (r#""TRUE""#, true),
            (r#""False""#, false),
            (r#""on""#, true),
            (r#""OFF""#, false),
            (r#""1""#, true),
            (r#""0""#, false),
        ] {
            let o = parse(&format!(r#"{{"restart": {v}}}"#)).expect(v);
            assert_eq!(o.restart, want, "{v}");
        }
        assert!(parse("{}").expect("defaults").restart, "default true");
    }

    #[test]
    fn state_and_strategy_outside_their_choices_are_refused() {
        refused_naming(r#"{"state": "revert"}"#, "state", &["fixed", "reverted"]);
        refused_naming(r#"{"state": "Fixed"}"#, "state", &["fixed", "reverted"]);
        refused_naming(r#"{"state": true}"#, "state", &["fixed", "reverted"]);
        refused_naming(
            r#"{"strategy": "bogus"}"#,
            "strategy",
            &["drop-in", "full-copy"],
        );
    }

    #[test]
    fn systemd_version_must_be_a_positive_integer() {
        for v in [
            r#""abc""#,
            "0",
            "-1",
            "true",
            r#""""#,
            r#""0""#,
            r#"" 231""#,
            "231.5",
            r#""-1""#,
            "4294967296",
        ] {
            refused_naming(
                &format!(r#"{{"systemd_version": {v}}}"#),
                "systemd_version",
                &["positive integer"],
            );
        }
        for (v, want) in [("231", 231), (r#""252""#, 252)] {
            let o = parse(&format!(r#"{{"systemd_version": {v}}}"#)).expect(v);
            assert_eq!(o.systemd_version, Some(want));
        }
    }

    #[test]
    fn version_and_strategy_apply_to_fixed_only() {
        refused_naming(
            r#"{"state": "reverted", "systemd_version": 231}"#,
            "systemd_version",
            &["state=fixed"],
        );
        refused_naming(
            r#"{"state": "reverted", "strategy": "drop-in"}"#,
            "strategy",
            &["state=fixed"],
        );
    }

    #[test]
    fn units_must_be_a_list_or_a_string_of_valid_names() {
        refused_naming(r#"{"units": 5}"#, "units", &["list"]);
        refused_naming(r#"{"units": {"a": 1}}"#, "units", &["list"]);
        refused_naming(r#"{"units": ["docker.service", 5]}"#, "units", &["list"]);
        refused_naming(
            r#"{"units": ["docker.service; rm -rf /"]}"#,
            "units",
            &["invalid unit name"],
        );
        refused_naming(
            r#"{"units": "docker.service $(reboot)"}"#,
            "units",
            &["$(reboot)"],
        );
        let o = parse(r#"{"units": "docker early-docker.service"}"#).expect("string");
        assert_eq!(
            o.units.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
            ["docker.service", "early-docker.service"]
        );
        let o = parse(r#"{"units": ["docker"]}"#).expect("list");
        assert_eq!(o.units[0].as_str(), "docker.service");
    }

    #[test]
    fn root_keeps_quotes_and_backslashes_verbatim() {
        let o = parse(r#"{"root": "/tmp/a \"quoted\" \\back\\slash"}"#).expect("root");
        assert_eq!(
            o.root.as_deref(),
            Some(Path::new(r#"/tmp/a "quoted" \back\slash"#))
        );
        refused_naming(r#"{"root": "relative/dir"}"#, "root", &["absolute path"]);
        refused_naming(r#"{"root": ""}"#, "root", &["absolute path"]);
        refused_naming(r#"{"root": ["/x"]}"#, "root", &["absolute path"]);
        refused_naming(r#"{"root": "/a\u0000b"}"#, "root", &["NUL"]);
        refused_naming(r#"{"dropfix": "dropfix"}"#, "dropfix", &["absolute path"]);
    }

    #[test]
    fn unknown_keys_and_repeated_keys_are_refused_but_ansibles_own_are_accepted() {
        refused_naming(r#"{"force": true}"#, "force", &["state", "units"]);
        refused_naming(
            r#"{"state": "fixed", "state": "reverted"}"#,
            "state",
            &["twice"],
        );
        assert!(refused("[]").contains("JSON object"));
        assert!(refused("state=fixed").contains("JSON object"));
        let o = parse(
            r#"{"_ansible_check_mode": true, "_ansible_diff": true, "_ansible_no_log": false,
                "_ansible_verbosity": 3, "_ansible_module_name": "dropfix",
                "_ansible_tmpdir": "/root/.ansible/tmp/x", "_ansible_remote_tmp": null}"#,
        )
        .expect("Ansible's own keys");
        assert!(o.check_mode && o.diff);
        refused_naming(
            r#"{"_ansible_check_mode": "perhaps"}"#,
            "_ansible_check_mode",
            &["boolean"],
        );
    }

    #[test]
    fn defaults_run_fix_with_yes_and_nothing_else() {
        let o = parse("{}").expect("defaults");
        assert_eq!(
            strs(&argv(&o)),
            ["fix", "--format", "json", "--color", "never", "--yes"]
        );
        let o = parse(r#"{"state": null, "root": null, "units": null}"#).expect("nulls");
        assert_eq!(strs(&argv(&o)).len(), 6, "null is not given");
    }

    #[test]
    fn good_arguments_map_to_the_exact_command_line() {
        let o = parse(
            r#"{"state": "fixed", "restart": "no", "root": "/mnt/im\"g", "systemd_version": "231",
                "strategy": "full-copy", "units": ["docker", "early-docker.service"],
                "_ansible_diff": true}"#,
        )
        .expect("good");
        assert_eq!(
            strs(&argv(&o)),
            [
                "fix",
                "--format",
                "json",
                "--color",
                "never",
                "--no-restart",
                "--with-contents",
                "--systemd-version",
                "231",
                "--strategy",
                "full-copy",
                "--root",
                "/mnt/im\"g",
                "--",
                "docker.service",
                "early-docker.service"
            ]
        );
        // Check mode previews whatever restart says.
        let o = parse(r#"{"state": "reverted", "restart": true, "_ansible_check_mode": true}"#)
            .expect("good");
        assert_eq!(
            strs(&argv(&o)),
            [
                "revert",
                "--format",
                "json",
                "--color",
                "never",
                "--dry-run"
            ]
        );
    }

    fn ran(code: i32, stdout: &str, stderr: &str) -> Ran {
        Ran {
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    fn outcome(args: &str, r: &Ran) -> Value {
        let o = parse(args).expect("args");
        let (v, failed) = result(&o, Path::new("/usr/bin/dropfix"), &argv(&o), r);
        assert_eq!(v["failed"], failed);
        v
    }

    #[test]
    fn changed_follows_files_and_restarts_not_a_reload() {
        let reload_only = r#"{"command": "fix", "root": "/", "changed": true, "units": [{"files": []}],
            "files": [], "actions": ["daemon-reload"], "restarted": false}"#;
        let v = outcome("{}", &ran(0, reload_only, ""));
        assert_eq!(v["changed"], false, "{v}");
        let restart_due = r#"{"command": "fix", "root": "/", "changed": true, "units": [{"files": []}],
            "files": [], "actions": ["restart docker.service"], "restarted": false}"#;
        assert_eq!(outcome("{}", &ran(0, restart_due, ""))["changed"], false);
        let v = outcome(r#"{"_ansible_check_mode": true}"#, &ran(0, restart_due, ""));
        assert_eq!(v["changed"], true, "a restart a live run would make");
        let restarted =
            r#"{"command": "fix", "root": "/", "units": [], "files": [], "restarted": true}"#;
        assert_eq!(outcome("{}", &ran(0, restarted, ""))["changed"], true);
        let revert =
            r#"{"command": "revert", "root": "/", "files": [], "restarted": ["docker.service"]}"#;
        assert_eq!(outcome("{}", &ran(0, revert, ""))["changed"], true);
        let file = r#"{"command": "revert", "root": "/", "files": [{"path": "/etc/x", "action": "remove", "diff": "d"}], "restarted": []}"#;
        let v = outcome(r#"{"state": "reverted"}"#, &ran(0, file, ""));
        assert_eq!(v["changed"], true);
        assert_eq!(v["failed"], false);
        assert_eq!(v["msg"], "dropfix revert: changed");
        assert!(v.get("diff").is_none(), "no diff unless asked: {v}");
    }

    #[test]
    fn diff_mode_gives_before_and_after_per_file_under_the_root() {
        let report = r#"{"command": "fix", "root": "/mnt/img", "units": [{"files": [
            {"path": "/etc/a.conf", "action": "create", "diff": "+x", "before": "", "after": "x\n"}]}],
            "files": [{"path": "/etc/b", "action": "replace", "diff": "-y\n+z"}], "restarted": false}"#;
        let v = outcome(r#"{"_ansible_diff": true}"#, &ran(0, report, ""));
        assert_eq!(
            v["diff"],
            json!([
                {"before_header": "/mnt/img/etc/a.conf", "after_header": "/mnt/img/etc/a.conf",
                 "before": "", "after": "x\n"},
                {"prepared": "-y\n+z"}
            ])
        );
    }

    #[test]
    fn failures_take_the_error_object_or_the_last_stderr_line() {
        let v = outcome(
            "{}",
            &ran(
                1,
                r#"{"error": {"message": "docker.service: unit not found"}}"#,
                "",
            ),
        );
        assert_eq!(v["failed"], true);
        assert_eq!(v["changed"], false);
        assert_eq!(v["rc"], 1);
        assert_eq!(
            v["msg"],
            "dropfix fix exited with status 1: docker.service: unit not found"
        );
        let v = outcome(
            "{}",
            &ran(
                1,
                "",
                "warning: x\ndropfix: error: reading docker.service: denied\n",
            ),
        );
        assert_eq!(
            v["msg"],
            "dropfix fix exited with status 1: dropfix: error: reading docker.service: denied"
        );
        assert_eq!(v["dropfix"], Value::Null);
        // An error object fails the task even with status 0.
        let v = outcome("{}", &ran(0, r#"{"error": {"message": "m"}}"#, ""));
        assert_eq!(v["failed"], true);
        let v = outcome("{}", &ran(2, "not json", ""));
        assert_eq!(v["msg"], "dropfix fix exited with status 2: no message");
    }

    #[test]
    fn unreachable_namespaces_fail_the_task_with_the_command_that_helps() {
        let v = outcome(
            "{}",
            &ran(
                4,
                r#"{"changed": true, "restarted": true, "error": null, "advice": ["docker restart c1 c2"], "units": []}"#,
                "",
            ),
        );
        assert_eq!(v["failed"], true);
        assert_eq!(v["changed"], true);
        assert_eq!(
            v["msg"],
            "dropfix fix: the fix is in force, but network namespaces are still held in another mount namespace and cannot be entered from the host; run: docker restart c1 c2"
        );
    }
}
