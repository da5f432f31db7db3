//! Settings: every effective setting of a unit with the file and line that decided it (for
//! `show`), and dropfix's own settings drop-in edited key by key (for `set` and `unset`).

use crate::directives::{self, Merge};
use crate::discover::{self, Discovered, Source};
use crate::manager::PropValue;
use crate::syntax;
use serde::Serialize;
use std::collections::HashMap;

/// One assignment that counts, or counted, for a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contribution {
    /// The value written there.
    pub value: String,
    /// In-root path.
    pub path: String,
    /// 1-based line.
    pub line: usize,
}

/// What systemd itself reports for a setting (live).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reported {
    /// The D-Bus property read.
    pub property: String,
    /// Its value, as text.
    pub value: String,
    /// Whether it matches the files (None: not comparable, e.g. specifiers or complex types).
    pub agrees: Option<bool>,
}

/// One setting, merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// Section.
    pub section: String,
    /// Key.
    pub key: String,
    /// Final value (a list's values joined by spaces; "" when reset or empty).
    pub value: String,
    /// For lists: every assignment that still counts, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Contribution>,
    /// The assignment that decided the value (a list's last one).
    pub source: Contribution,
    /// Assignments overridden by a later one or cleared by an empty assignment.
    pub overridden: Vec<Contribution>,
    /// systemd's own value, live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd: Option<Reported>,
}

/// How systemd treats one drop-in file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropInStatus {
    /// In-root path.
    pub path: String,
    /// applied, masked, hidden or skipped.
    pub status: String,
    /// Why, for anything but applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Assignments of one key while merging: still counting, overridden, and the last one seen.
type Merging = (Vec<Contribution>, Vec<Contribution>, Contribution);

/// Merge every assignment of `sources` (fragment first, then drop-ins in order).
pub fn merge_all(sources: &[Source]) -> Vec<Setting> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut state: HashMap<(String, String), Merging> = HashMap::new();
    for src in sources {
        for a in &src.file.assignments {
            let k = (a.section.clone(), a.key.clone());
            let c = Contribution {
                value: a.value.clone(),
                path: src.path.clone(),
                line: a.line,
            };
            let entry = state.entry(k.clone()).or_insert_with(|| {
                order.push(k.clone());
                (Vec::new(), Vec::new(), c.clone())
            });
            let (current, overridden, last) = entry;
            match directives::merge_kind(&a.key) {
                // A value systemd's parser rejects is ignored with a warning, and the value
                // before it stays (e.g. `MountFlags=Slave`).
                Merge::Single if directives::check_value(&a.key, &a.value).is_err() => {
                    overridden.push(c.clone());
                    continue;
                }
                Merge::Single => {
                    overridden.append(current);
                    if !a.value.is_empty() {
                        current.push(c.clone());
                    }
                }
                Merge::List => {
                    if a.value.is_empty() {
                        overridden.append(current);
                    } else {
                        current.push(c.clone());
                    }
                }
                // An empty dependency assignment is ignored: it neither adds nor clears.
                Merge::Deps if a.value.is_empty() => continue,
                Merge::Deps => current.push(c.clone()),
            }
            *last = c;
        }
    }
    // Group by section, sections and keys in order of first appearance (stable sort).
    let mut sections: Vec<String> = Vec::new();
    for (sec, _) in &order {
        if !sections.contains(sec) {
            sections.push(sec.clone());
        }
    }
    order.sort_by_key(|(sec, _)| sections.iter().position(|s| s == sec));
    order
        .into_iter()
        .filter_map(|k| {
            let (current, overridden, last) = state.remove(&k)?;
            let list = directives::merge_kind(&k.1) != Merge::Single;
            Some(Setting {
                value: current
                    .iter()
                    .map(|c| c.value.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                values: if list { current.clone() } else { Vec::new() },
                source: last,
                overridden,
                section: k.0,
                key: k.1,
                systemd: None,
            })
        })
        .collect()
}

/// Every drop-in file of the unit and what systemd does with it.
pub fn dropin_statuses(d: &Discovered) -> Vec<DropInStatus> {
    let applied = discover::applied(&d.dropins);
    let mut out = Vec::new();
    // In the order systemd applies them: by file name across all directories, each name's
    // winner first and the files it hides after it.
    let mut sorted: Vec<&discover::DropIn> = d.dropins.iter().collect();
    sorted.sort_by(|a, b| {
        a.basename()
            .as_bytes()
            .cmp(b.basename().as_bytes())
            .then(a.order.cmp(&b.order))
    });
    for x in sorted {
        let is_applied = applied.iter().any(|a| a.path == x.path);
        let (status, reason) = if let Some(by) = discover::hidden_by(&d.dropins, x) {
            let why = if by.masked {
                format!("masked by {} (empty or a link to /dev/null)", by.path)
            } else {
                format!("hidden by {} (same name, higher priority)", by.path)
            };
            ("hidden", Some(why))
        } else if x.masked && is_applied {
            ("masked", Some("empty or a link to /dev/null: it sets nothing and hides same-named drop-ins below it".to_string()))
        } else {
            ("applied", None)
        };
        out.push(DropInStatus {
            path: x.path.clone(),
            status: status.into(),
            reason,
        });
    }
    for (path, why) in &d.skipped {
        out.push(DropInStatus {
            path: path.clone(),
            status: "skipped".into(),
            reason: Some(why.clone()),
        });
    }
    out
}

/// Split an `Environment=` value into assignments the way `extract_first_word()` does with
/// quotes and C escapes.
pub fn split_words(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some('n') => cur.push('\n'),
                    Some('t') => cur.push('\t'),
                    Some('s') => cur.push(' '),
                    Some(o) => cur.push(o),
                    None => {}
                }
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                in_word = true;
                quote = Some(c);
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// D-Bus property names that differ from the key (time spans are exposed in µs).
fn property_name(key: &str) -> String {
    match key {
        "TimeoutSec" => "TimeoutStartUSec".into(),
        "StartLimitInterval" | "StartLimitIntervalSec" => "StartLimitIntervalUSec".into(),
        k if is_time_key(k) => format!("{}USec", k.trim_end_matches("Sec")),
        k => k.into(),
    }
}

fn is_time_key(k: &str) -> bool {
    matches!(
        k,
        "TimeoutStartSec"
            | "TimeoutStopSec"
            | "TimeoutAbortSec"
            | "RestartSec"
            | "WatchdogSec"
            | "RuntimeMaxSec"
    )
}

fn show_prop(v: &PropValue) -> String {
    match v {
        PropValue::Bool(b) => if *b { "yes" } else { "no" }.into(),
        PropValue::Str(s) => s.clone(),
        PropValue::Num(u64::MAX) => "infinity".into(),
        PropValue::Num(n) => n.to_string(),
        PropValue::Strings(v) => v.join(" "),
        PropValue::List(n) => format!("({n} entries)"),
        PropValue::Other => "(complex value)".into(),
    }
}

/// What systemd reports for a setting, and whether it matches the merged files.
pub fn compare(s: &Setting, props: &HashMap<String, PropValue>) -> Option<Reported> {
    let prop = property_name(&s.key);
    let v = props.get(&prop)?;
    let file = s.value.as_str();
    let comparable = !s
        .values
        .iter()
        .chain(std::iter::once(&s.source))
        .any(|c| c.value.contains('%'));
    let agrees = if !comparable {
        None
    } else {
        match v {
            PropValue::Bool(b) => directives::parse_bool(file)
                .map(|f| f == *b)
                .or(Some(file.is_empty() && !*b))
                .filter(|_| !file.is_empty() || !b),
            PropValue::Num(n) if s.key == "MountFlags" => {
                Some(crate::effective::MountFlags::from_bus(*n).map(|m| m.as_str()) == Some(file))
            }
            PropValue::Num(n) if s.key.starts_with("Limit") => {
                directives::parse_limit(&s.key, file).map(|(_, hard)| hard == *n)
            }
            PropValue::Num(n) if prop.ends_with("USec") => directives::parse_timespan_usec(file)
                .map(|u| {
                    // TimeoutStartSec=0 and friends mean "no timeout".
                    let u = if u == 0 && s.key.starts_with("Timeout") {
                        u64::MAX
                    } else {
                        u
                    };
                    u == *n
                }),
            PropValue::Num(n) if s.key == "TasksMax" => match file {
                "infinity" => Some(*n == u64::MAX),
                f if f.ends_with('%') => None,
                f => f.parse::<u64>().ok().map(|x| x == *n),
            },
            PropValue::Str(b) if s.key == "ProtectSystem" || s.key == "ProtectHome" => {
                let f = match directives::parse_bool(file) {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => file,
                };
                Some(f == b)
            }
            PropValue::Str(b)
                if [
                    "Type",
                    "Restart",
                    "KillMode",
                    "NotifyAccess",
                    "Description",
                    "ProtectProc",
                    "ProcSubset",
                ]
                .contains(&s.key.as_str()) =>
            {
                Some(file == b || (file.is_empty() && s.key != "Description"))
            }
            PropValue::Strings(b) if s.key == "Environment" => {
                let words: Vec<String> = s
                    .values
                    .iter()
                    .flat_map(|c| split_words(&c.value))
                    .collect();
                Some(words == *b)
            }
            _ => None,
        }
    };
    Some(Reported {
        property: prop,
        value: show_prop(v),
        agrees,
    })
}

/// dropfix's settings drop-in (sorts after every other drop-in, like the MountFlags one).
pub const SETTINGS_DROPIN: &str = "zz-dropfix-settings.conf";

/// One change to dropfix's settings drop-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set (or, for a list, add) `key=value`; `reset` clears the list first.
    Set {
        /// Section.
        section: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Write the empty assignment first.
        reset: bool,
    },
    /// Drop dropfix's assignments of `key`.
    Unset {
        /// Section.
        section: String,
        /// Key.
        key: String,
    },
}

/// Parse `Section.Key=Value` (set) or `Section.Key` (unset) against the unit type's directives.
pub fn parse_op(unit_type: &str, arg: &str, set: bool, reset: bool) -> Result<Op, String> {
    let (name, value) = match (set, arg.split_once('=')) {
        (true, Some((n, v))) => (n, Some(v.trim())),
        (true, None) => return Err(format!("{arg}: expected Section.Key=Value")),
        (false, Some(_)) => return Err(format!("{arg}: expected Section.Key (no value)")),
        (false, None) => (arg, None),
    };
    let Some((section, key)) = name.split_once('.') else {
        return Err(format!(
            "{arg}: expected Section.Key, e.g. Service.LimitNOFILE"
        ));
    };
    if !directives::sections(unit_type).contains(&section) {
        return Err(format!(
            "{arg}: a .{unit_type} unit has no [{section}] section (it has {})",
            directives::sections(unit_type).join(", ")
        ));
    }
    if section == "Install" {
        return Err(format!("{arg}: systemd ignores [Install] in drop-ins; edit the unit's own file or use systemctl enable"));
    }
    if !directives::known(unit_type, section, key) {
        return Err(format!(
            "{arg}: systemd knows no {key}= in [{section}] of a .{unit_type} unit"
        ));
    }
    match value {
        None => Ok(Op::Unset {
            section: section.into(),
            key: key.into(),
        }),
        Some(v) => {
            if v.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "{arg}: control characters are not allowed in a value"
                ));
            }
            if (v.len() - v.trim_end_matches('\\').len()) % 2 == 1 {
                return Err(format!(
                    "{arg}: a value ending in a backslash would continue onto the next line"
                ));
            }
            if directives::merge_kind(key) == Merge::Deps && (reset || v.is_empty()) {
                return Err(format!(
                    "{arg}: systemd cannot reset a dependency list ({key}=) from a drop-in; it only adds to it"
                ));
            }
            if v.is_empty() && !reset {
                return Err(format!("{arg}: an empty value resets the setting; say so with --reset or use dropfix unset"));
            }
            directives::check_value(key, v).map_err(|e| format!("{arg}: {e}"))?;
            Ok(Op::Set {
                section: section.into(),
                key: key.into(),
                value: v.into(),
                reset,
            })
        }
    }
}

/// Apply ops to dropfix's settings drop-in; None when nothing is left (remove the file).
pub fn edit_own(current: Option<&[u8]>, header: &str, ops: &[Op]) -> Option<String> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    if let Some(data) = current {
        let file = syntax::parse(data).unwrap_or_else(|(partial, _)| partial);
        for a in &file.assignments {
            push(&mut sections, &a.section, &a.key, &a.value);
        }
    }
    let mut cleared: Vec<(&str, &str)> = Vec::new();
    for op in ops {
        match op {
            Op::Set {
                section,
                key,
                value,
                reset,
            } => {
                let list = directives::merge_kind(key) != Merge::Single;
                let entries = entries_mut(&mut sections, section);
                if !list {
                    entries.retain(|(k, _)| k != key);
                    entries.push((key.clone(), value.clone()));
                    continue;
                }
                // --reset clears the list once per key, then every value given is added.
                if *reset && !cleared.contains(&(section.as_str(), key.as_str())) {
                    cleared.push((section, key));
                    entries.retain(|(k, _)| k != key);
                    entries.push((key.clone(), String::new()));
                }
                if !value.is_empty() && !entries.iter().any(|(k, v)| k == key && v == value) {
                    entries.push((key.clone(), value.clone()));
                }
            }
            Op::Unset { section, key } => {
                entries_mut(&mut sections, section).retain(|(k, _)| k != key);
            }
        }
    }
    sections.retain(|(_, e)| !e.is_empty());
    if sections.is_empty() {
        return None;
    }
    let mut out = header.to_string();
    for (i, (s, entries)) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("[{s}]\n"));
        for (k, v) in entries {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    Some(out)
}

fn push(
    sections: &mut Vec<(String, Vec<(String, String)>)>,
    section: &str,
    key: &str,
    value: &str,
) {
    entries_mut(sections, section).push((key.into(), value.into()));
}

fn entries_mut<'a>(
    sections: &'a mut Vec<(String, Vec<(String, String)>)>,
    section: &str,
) -> &'a mut Vec<(String, String)> {
    let i = match sections.iter().position(|(s, _)| s == section) {
        Some(i) => i,
        None => {
            sections.push((section.into(), Vec::new()));
            sections.len() - 1
        }
    };
    &mut sections[i].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &str, text: &str) -> Source {
        Source {
            path: path.into(),
            file: syntax::parse(text.as_bytes()).unwrap(),
            stopped: None,
        }
    }

    #[test]
    fn single_value_last_wins_with_overridden_beneath() {
        let s = merge_all(&[
            src("/u", "[Service]\nLimitNOFILE=1024\n"),
            src("/e", "[Service]\nLimitNOFILE=4096\n"),
        ]);
        assert_eq!(s[0].value, "4096");
        assert_eq!(s[0].source.path, "/e");
        assert_eq!(s[0].overridden[0].value, "1024");
    }

    #[test]
    fn list_appends_and_empty_assignment_clears() {
        let s = merge_all(&[
            src("/u", "[Service]\nEnvironment=A=1\nEnvironment=B=2\n"),
            src("/e", "[Service]\nEnvironment=\nEnvironment=C=3\n"),
        ]);
        assert_eq!(s[0].value, "C=3");
        assert_eq!(s[0].values.len(), 1);
        assert_eq!(s[0].overridden.len(), 2);
    }

    #[test]
    fn empty_dependency_assignment_neither_adds_nor_clears() {
        let s = merge_all(&[
            src("/u", "[Unit]\nRequires=a.socket\n"),
            src("/e", "[Unit]\nRequires=\nRequires=b.socket\n"),
        ]);
        assert_eq!(s[0].value, "a.socket b.socket");
        assert!(s[0].overridden.is_empty());
        let e = parse_op("service", "Unit.Requires=", true, true).unwrap_err();
        assert!(e.contains("cannot reset a dependency list"), "{e}");
        assert!(parse_op("service", "Unit.After=x.target", true, false).is_ok());
    }

    #[test]
    fn environment_words_follow_quoting() {
        assert_eq!(
            split_words(r#"A=1 "B=two words" C=x\ y"#),
            ["A=1", "B=two words", "C=x y"]
        );
        assert_eq!(split_words("'Q=a b'"), ["Q=a b"]);
    }

    #[test]
    fn set_is_idempotent_for_lists_and_reset_writes_empty_first() {
        let h = "# h\n";
        let op = |v: &str, reset| Op::Set {
            section: "Service".into(),
            key: "Environment".into(),
            value: v.into(),
            reset,
        };
        let once = edit_own(None, h, &[op("A=1", false)]).unwrap();
        let twice = edit_own(Some(once.as_bytes()), h, &[op("A=1", false)]).unwrap();
        assert_eq!(once, twice);
        assert_eq!(once, "# h\n[Service]\nEnvironment=A=1\n");
        let reset = edit_own(Some(once.as_bytes()), h, &[op("B=2", true)]).unwrap();
        assert_eq!(reset, "# h\n[Service]\nEnvironment=\nEnvironment=B=2\n");
        let two = edit_own(
            Some(once.as_bytes()),
            h,
            &[op("B=2", true), op("C=3", true)],
        )
        .unwrap();
        assert_eq!(
            two,
            "# h\n[Service]\nEnvironment=\nEnvironment=B=2\nEnvironment=C=3\n"
        );
        let single = edit_own(
            None,
            h,
            &[Op::Set {
                section: "Service".into(),
                key: "LimitNOFILE".into(),
                value: "1".into(),
                reset: false,
            }],
        )
        .unwrap();
        let replaced = edit_own(
            Some(single.as_bytes()),
            h,
            &[Op::Set {
                section: "Service".into(),
                key: "LimitNOFILE".into(),
                value: "2".into(),
                reset: false,
            }],
        )
        .unwrap();
        assert_eq!(replaced, "# h\n[Service]\nLimitNOFILE=2\n");
        let gone = edit_own(
            Some(replaced.as_bytes()),
            h,
            &[Op::Unset {
                section: "Service".into(),
                key: "LimitNOFILE".into(),
            }],
        );
        assert_eq!(gone, None);
    }

    #[test]
    fn ops_are_checked_against_directives_and_value_rules() {
        assert!(parse_op("service", "Service.LimitNOFILE=4096", true, false).is_ok());
        let e = parse_op("service", "Service.LimitNOFLIE=4096", true, false).unwrap_err();
        assert!(e.contains("knows no LimitNOFLIE="), "{e}");
        assert!(
            parse_op("service", "Service.PrivateTmp=perhaps", true, false)
                .unwrap_err()
                .contains("boolean")
        );
        assert!(
            parse_op("service", "Service.MountFlags=rshared", true, false)
                .unwrap_err()
                .contains("one of shared, slave, private")
        );
        assert!(parse_op("service", "Socket.ListenStream=1", true, false)
            .unwrap_err()
            .contains("no [Socket] section"));
        assert!(parse_op("service", "Install.WantedBy=x", true, false)
            .unwrap_err()
            .contains("ignores [Install]"));
        assert!(parse_op("service", "LimitNOFILE=1", true, false).is_err());
        assert!(parse_op("service", "Service.Environment=A=1\\", true, false).is_err());
        assert!(parse_op("service", "Service.LimitNOFILE", false, false).is_ok());
    }
}
