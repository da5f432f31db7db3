//! Render: reports -> unified diffs, short aligned text for people, stable JSON for machines.

use serde::Serialize;
use similar::TextDiff;

/// Whether to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colour on.
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    /// Bold.
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    /// Yellow, for warnings.
    pub fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
    /// Green, for good news.
    pub fn good(&self, s: &str) -> String {
        self.paint("32", s)
    }
    /// Red, for failures.
    pub fn bad(&self, s: &str) -> String {
        self.paint("31", s)
    }
    /// Dim, for secondary detail.
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// Unified diff of one file with `a/` and `b/` headers (paths relative to the root).
pub fn diff(path: &str, old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let rel = path.trim_start_matches('/');
    TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .missing_newline_hint(true)
        .header(&format!("a/{rel}"), &format!("b/{rel}"))
        .to_string()
}

/// Colour a unified diff line by line.
pub fn paint_diff(d: &str, style: Style) -> String {
    if !style.color {
        return d.to_string();
    }
    let mut out = String::new();
    for line in d.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let painted = if body.starts_with("+++") || body.starts_with("---") {
            style.bold(body)
        } else if body.starts_with('+') {
            style.good(body)
        } else if body.starts_with('-') {
            style.bad(body)
        } else if body.starts_with("@@") {
            style.paint("36", body)
        } else {
            body.to_string()
        };
        out.push_str(&painted);
        out.push_str(nl);
    }
    out
}

/// One file in a report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// In-root path.
    pub path: String,
    /// create, replace or remove (skip for revert of a file changed by someone else).
    pub action: String,
    /// Unified diff.
    pub diff: String,
    /// The whole text before (empty when the file did not exist), lossy UTF-8; only with
    /// `--with-contents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The whole text after (empty when the file goes away), lossy UTF-8; only with
    /// `--with-contents`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// One unit in a fix report.
#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    /// Unit name.
    pub unit: String,
    /// drop-in, full-copy or none.
    pub strategy: String,
    /// systemd major version planned for.
    pub systemd_version: Option<u32>,
    /// Where the version came from.
    pub systemd_version_source: Option<String>,
    /// MountFlags in force now: slave, shared, private or "" (unset).
    pub mount_flags_before: String,
    /// MountFlags once the change is in force.
    pub mount_flags_after: String,
    /// The file and line that set MountFlags now.
    pub mount_flags_source: Option<String>,
    /// Things a person must know.
    pub warnings: Vec<String>,
    /// Why the plan is what it is.
    pub notes: Vec<String>,
    /// File changes.
    pub files: Vec<FileReport>,
    /// Live: the unit's ActiveState (null offline).
    pub active_state: Option<String>,
    /// Live: whether dropfix restarted it.
    pub restarted: bool,
    /// Live: the restart job's result (`done`, `failed`, ...).
    pub job_result: Option<String>,
    /// Live: the checks after the fix, with evidence.
    pub verify: Option<VerifyReport>,
    /// Why this unit cannot be fixed (null when it can); the other units are still fixed.
    pub error: Option<crate::error::ErrorReport>,
}

/// Checks after a live fix.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Every check passed.
    pub ok: bool,
    /// Each check and what was seen.
    pub checks: Vec<crate::verify::Check>,
}

/// The whole result of `fix`.
#[derive(Debug, Clone, Serialize)]
pub struct FixReport {
    /// "fix".
    pub command: String,
    /// The root worked on.
    pub root: String,
    /// Nothing written (--dry-run or --check).
    pub dry_run: bool,
    /// Talking to a running systemd (not --root).
    pub live: bool,
    /// Files changed, or would change with --dry-run/--check.
    pub changed: bool,
    /// Per unit.
    pub units: Vec<UnitReport>,
    /// Files outside any unit (`--link-ip-netns`).
    pub files: Vec<FileReport>,
    /// Notes about the run as a whole.
    pub notes: Vec<String>,
    /// systemd was reloaded.
    pub reloaded: bool,
    /// A unit was restarted.
    pub restarted: bool,
    /// A failure put the previous files back.
    pub rolled_back: bool,
    /// What a live run does after writing (or did).
    pub actions: Vec<String>,
    /// What is still to do: a restart left for later.
    pub pending: Vec<String>,
    /// What a restart of docker stops, from the Docker Engine API (null when nothing is
    /// restarted, or offline).
    pub impact: Option<crate::app::Impact>,
    /// Commands that help with what is still wrong, e.g. `docker restart NAME...`.
    pub advice: Vec<String>,
    /// Namespaces still held in another mount namespace after the fix, with who holds them.
    pub unreachable: Vec<crate::netns::Entry>,
    /// Why the run failed (null when it did not).
    pub error: Option<crate::error::ErrorReport>,
}

/// The whole result of `revert`.
#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    /// "revert".
    pub command: String,
    /// The root worked on.
    pub root: String,
    /// Nothing changed (--dry-run).
    pub dry_run: bool,
    /// Files changed, or would change.
    pub changed: bool,
    /// Per file.
    pub files: Vec<FileReport>,
    /// Files left alone and why.
    pub skipped: Vec<String>,
    /// Notes about the run.
    pub notes: Vec<String>,
    /// What is still to do: a restart left for later.
    pub pending: Vec<String>,
    /// systemd was reloaded.
    pub reloaded: bool,
    /// Units restarted.
    pub restarted: Vec<String>,
    /// What a restart of docker stops (null when nothing is restarted, or offline).
    pub impact: Option<crate::app::Impact>,
    /// Why the run failed (null when it did not).
    pub error: Option<crate::error::ErrorReport>,
}

fn unit_summary(u: &UnitReport, style: Style) -> String {
    let before = if u.mount_flags_before.is_empty() {
        "(unset)"
    } else {
        &u.mount_flags_before
    };
    let after = if u.mount_flags_after.is_empty() {
        "(unset)"
    } else {
        &u.mount_flags_after
    };
    let arrow = if before == after {
        format!("MountFlags: {before} (no change)")
    } else {
        format!("MountFlags: {before} -> {after}")
    };
    format!("{}: {arrow}\n", style.bold(&u.unit))
}

/// Text for `fix`.
pub fn fix_text(r: &FixReport, style: Style) -> String {
    let mut out = String::new();
    for u in &r.units {
        if !u.mount_flags_before.is_empty() {
            let src = u
                .mount_flags_source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            let what = if crate::unitname::is_docker(&u.unit) {
                "mounts it makes under /var/run/docker/netns never reach the host"
            } else {
                "the mounts it makes (network namespaces under /run/netns among them) never reach the host"
            };
            out.push_str(&format!(
                "{}: MountFlags={}{src} gives the service a mount namespace of its own:\n  {what}, so `nsenter --net=` and `ip netns exec` fail with \"Invalid argument\".\n",
                style.bold(&u.unit),
                u.mount_flags_before
            ));
        }
        for n in &u.notes {
            out.push_str(&format!("  {} {n}\n", style.dim("note:")));
        }
        for w in &u.warnings {
            out.push_str(&format!("  {} {w}\n", style.warn("warning:")));
        }
    }
    let files: Vec<&FileReport> = r
        .units
        .iter()
        .flat_map(|u| u.files.iter())
        .chain(r.files.iter())
        .collect();
    if !files.is_empty() {
        out.push('\n');
    }
    for f in &files {
        out.push_str(&paint_diff(&f.diff, style));
    }
    if !files.is_empty() {
        out.push('\n');
    }
    for n in &r.notes {
        out.push_str(&format!("{} {n}\n", style.dim("note:")));
    }
    for u in &r.units {
        out.push_str(&unit_summary(u, style));
        if let Some(j) = &u.job_result {
            out.push_str(&format!(
                "  restart job: {j}, ActiveState={}\n",
                u.active_state.as_deref().unwrap_or("?")
            ));
        }
        if let Some(v) = &u.verify {
            for c in &v.checks {
                let mark = if c.ok {
                    style.good("ok  ")
                } else {
                    style.bad("FAIL")
                };
                out.push_str(&format!(
                    "  {mark} {}\n       {}\n",
                    c.check,
                    style.dim(&c.evidence)
                ));
            }
        }
    }
    if let Some(i) = &r.impact {
        out.push_str(&format!("{} {}\n", style.warn("restart:"), i.sentence()));
    }
    if r.rolled_back {
        out.push_str(&format!(
            "{}\n",
            style.bad("rolled back: the previous files are in place again")
        ));
    } else if r.error.is_some() && !r.changed {
        out.push_str(&format!("{}\n", style.bad("nothing written")));
    } else if !r.changed {
        out.push_str(&format!("{}\n", style.good("nothing to do")));
    } else if r.dry_run {
        out.push_str(&format!(
            "dry run: nothing written; a live run would then: {}\n",
            r.actions.join(", ")
        ));
    } else {
        if !files.is_empty() {
            out.push_str(&format!("wrote {} file(s)\n", files.len()));
        }
        if !r.actions.is_empty() {
            out.push_str(&format!("done: {}\n", r.actions.join(", ")));
        }
    }
    for p in &r.pending {
        out.push_str(&format!("{} {p}\n", style.warn("still to do:")));
    }
    if !r.unreachable.is_empty() {
        out.push_str(&format!(
            "{} {} network namespace(s) are still held in another mount namespace and cannot be entered from the host\n",
            style.bad("unreachable:"),
            r.unreachable.len()
        ));
    }
    for a in &r.advice {
        out.push_str(&format!("{} {a}\n", style.warn("to reach them, run:")));
    }
    out
}

/// Text for `revert`.
pub fn revert_text(r: &RevertReport, style: Style) -> String {
    let mut out = String::new();
    for f in &r.files {
        out.push_str(&paint_diff(&f.diff, style));
    }
    for s in &r.skipped {
        out.push_str(&format!("{} {s}\n", style.warn("left alone:")));
    }
    for n in &r.notes {
        out.push_str(&format!("{} {n}\n", style.dim("note:")));
    }
    if let Some(i) = &r.impact {
        out.push_str(&format!("{} {}\n", style.warn("restart:"), i.sentence()));
    }
    if r.error.is_some() && !r.changed {
        out.push_str(&format!("{}\n", style.bad("nothing changed")));
    } else if !r.changed {
        out.push_str(&format!("{}\n", style.good("nothing to revert")));
    } else if r.dry_run {
        if r.files.is_empty() {
            out.push_str(
                "dry run: nothing changed; a live run would restart the units named above\n",
            );
        } else {
            out.push_str(&format!(
                "dry run: nothing changed; {} file(s) would be restored or removed\n",
                r.files.len()
            ));
        }
    } else {
        if !r.files.is_empty() {
            out.push_str(&format!("reverted {} file(s)\n", r.files.len()));
        }
        let mut done = Vec::new();
        if r.reloaded {
            done.push("daemon-reload".to_string());
        }
        done.extend(r.restarted.iter().map(|u| format!("restart {u}")));
        if !done.is_empty() {
            out.push_str(&format!("done: {}\n", done.join(", ")));
        }
    }
    for p in &r.pending {
        out.push_str(&format!("{} {p}\n", style.warn("still to do:")));
    }
    out
}

/// Text for `doctor`: a verdict per unit, then each finding with its evidence and fix.
pub fn doctor_text(d: &crate::doctor::Diagnosis, style: Style) -> String {
    use crate::doctor::{Finding, Status};
    fn finding(out: &mut String, f: &Finding, style: Style) {
        let tag = match f.status {
            Status::Ok => style.good("ok       "),
            Status::Problem => style.bad("PROBLEM  "),
            Status::Info => style.dim("info     "),
            Status::Unchecked => style.warn("unchecked"),
        };
        out.push_str(&format!("  {tag} {}\n", f.summary));
        for e in &f.evidence {
            out.push_str(&format!("            {}\n", style.dim(e)));
        }
        if let Some(fix) = &f.fix {
            out.push_str(&format!("            fix: {}\n", style.bold(fix)));
        }
    }
    let mut out = String::new();
    for u in &d.units {
        let verdict = if u.healthy {
            style.good("healthy")
        } else {
            style.bad("PROBLEM")
        };
        out.push_str(&format!("{}: {verdict}\n", style.bold(&u.unit)));
        for f in &u.findings {
            finding(&mut out, f, style);
        }
    }
    out.push_str(&format!("{}\n", style.bold("host:")));
    for f in &d.host {
        finding(&mut out, f, style);
    }
    let problems = d
        .units
        .iter()
        .flat_map(|u| u.findings.iter())
        .chain(d.host.iter())
        .filter(|f| f.status == Status::Problem)
        .count();
    if problems == 0 {
        out.push_str(&format!("{}\n", style.good("healthy: nothing to fix")));
    } else {
        out.push_str(&format!(
            "{}\n",
            style.bad(&format!("{problems} problem(s) found"))
        ));
        for c in &d.commands {
            out.push_str(&format!("{} {c}\n", style.warn("run:")));
        }
    }
    out
}

/// The result of `show`.
#[derive(Debug, Clone, Serialize)]
pub struct ShowReport {
    /// "show".
    pub command: String,
    /// Unit name.
    pub unit: String,
    /// Every name of the unit: the primary one, then its aliases.
    pub names: Vec<String>,
    /// The fragment systemd loads.
    pub fragment: String,
    /// Talking to a running systemd.
    pub live: bool,
    /// systemd says the files changed since it loaded them.
    pub need_daemon_reload: bool,
    /// Parts of files systemd skips (a drop-in it stops reading at a bad line), with file:line.
    pub warnings: Vec<String>,
    /// Settings, in file order.
    pub settings: Vec<crate::settings::Setting>,
    /// Every drop-in file and what systemd does with it.
    pub dropins: Vec<crate::settings::DropInStatus>,
}

/// Text for `show`.
pub fn show_text(r: &ShowReport, style: Style) -> String {
    let mut out = format!(
        "{} {}\n",
        style.bold(&r.unit),
        style.dim(&format!("({})", r.fragment))
    );
    for w in &r.warnings {
        out.push_str(&format!("{} {w}\n", style.warn("warning:")));
    }
    if r.need_daemon_reload {
        out.push_str(&format!(
            "{}\n",
            style.warn("systemd has not loaded the files on disk yet (daemon-reload pending)")
        ));
    }
    let w = r
        .settings
        .iter()
        .map(|s| s.key.len() + s.value.chars().count() + 1)
        .max()
        .unwrap_or(0)
        .min(60);
    let mut section = "";
    for s in &r.settings {
        if s.section != section {
            section = &s.section;
            out.push_str(&format!("[{section}]\n"));
        }
        let kv = format!("{}={}", s.key, s.value);
        let mut line = format!("  {kv:<w$}  {}:{}", s.source.path, s.source.line);
        if let Some(sys) = &s.systemd {
            let mark = match sys.agrees {
                Some(true) => style.good("="),
                Some(false) if r.need_daemon_reload => style.warn("reload pending"),
                Some(false) => style.bad("DIFFERS"),
                None => String::new(),
            };
            line.push_str(&format!("  systemd: {} {mark}", sys.value));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if s.values.len() > 1 {
            for c in &s.values {
                out.push_str(&format!(
                    "      {}\n",
                    style.dim(&format!("+ {}={}  {}:{}", s.key, c.value, c.path, c.line))
                ));
            }
        }
        for o in &s.overridden {
            out.push_str(&format!(
                "      {}\n",
                style.dim(&format!(
                    "overridden: {}={}  {}:{}",
                    s.key, o.value, o.path, o.line
                ))
            ));
        }
    }
    if !r.dropins.is_empty() {
        out.push_str("drop-ins:\n");
        for d in &r.dropins {
            let reason = d
                .reason
                .as_deref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<8} {}{}\n",
                d.status,
                d.path,
                style.dim(&reason)
            ));
        }
    }
    out
}

/// A setting before and after `set`/`unset`.
#[derive(Debug, Clone, Serialize)]
pub struct SettingChange {
    /// Section.Key.
    pub key: String,
    /// Merged value before.
    pub before: String,
    /// Merged value after.
    pub after: String,
}

/// The result of `set` and `unset`.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    /// "set" or "unset".
    pub command: String,
    /// Unit name.
    pub unit: String,
    /// Nothing written.
    pub dry_run: bool,
    /// Files changed, or would.
    pub changed: bool,
    /// The drop-in change.
    pub files: Vec<FileReport>,
    /// Effective values before and after.
    pub settings: Vec<SettingChange>,
    /// Parts of files systemd skips (a drop-in it stops reading at a bad line), with file:line.
    pub warnings: Vec<String>,
    /// systemd was reloaded.
    pub reloaded: bool,
    /// The unit was restarted.
    pub restarted: bool,
    /// The restart job's result.
    pub job_result: Option<String>,
    /// systemd's values after the change, compared.
    pub verify: Vec<crate::settings::Reported>,
    /// A failure put the previous file back.
    pub rolled_back: bool,
    /// What is left to do: a restart left for later.
    pub pending: Vec<String>,
    /// What a restart stops (null when nothing is restarted, or offline).
    pub impact: Option<crate::app::Impact>,
    /// Why the run failed (null when it did not).
    pub error: Option<crate::error::ErrorReport>,
}

/// Text for `set` and `unset`.
pub fn set_text(r: &SetReport, style: Style) -> String {
    let mut out = String::new();
    for w in &r.warnings {
        out.push_str(&format!("{} {w}\n", style.warn("warning:")));
    }
    for f in &r.files {
        out.push_str(&paint_diff(&f.diff, style));
    }
    for c in &r.settings {
        let show = |v: &str| {
            if v.is_empty() {
                "(unset)".to_string()
            } else {
                v.to_string()
            }
        };
        if c.before == c.after {
            out.push_str(&format!(
                "{}: {}: {} (no change)\n",
                style.bold(&r.unit),
                c.key,
                show(&c.after)
            ));
        } else {
            out.push_str(&format!(
                "{}: {}: {} -> {}\n",
                style.bold(&r.unit),
                c.key,
                show(&c.before),
                show(&c.after)
            ));
        }
    }
    for v in &r.verify {
        let mark = match v.agrees {
            Some(true) => style.good("ok  "),
            Some(false) => style.bad("FAIL"),
            None => style.dim("    "),
        };
        out.push_str(&format!(
            "  {mark} systemd reports {}={}\n",
            v.property, v.value
        ));
    }
    if let Some(j) = &r.job_result {
        out.push_str(&format!("  restart job: {j}\n"));
    }
    if r.rolled_back {
        out.push_str(&format!(
            "{}\n",
            style.bad("rolled back: the previous file is in place again")
        ));
    } else if !r.changed {
        out.push_str(&format!("{}\n", style.good("nothing to do")));
    } else if r.dry_run {
        out.push_str("dry run: nothing written\n");
    } else {
        let mut done = vec!["written".to_string()];
        if r.reloaded {
            done.push("daemon-reload".into());
        }
        if r.restarted {
            done.push(format!("restart {}", r.unit));
        }
        out.push_str(&format!("done: {}\n", done.join(", ")));
    }
    for p in &r.pending {
        out.push_str(&format!("{} {p}\n", style.warn("still to do:")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_a_and_b_headers_relative_to_root() {
        let d = diff("/etc/x.conf", b"", b"[Service]\nMountFlags=\n");
        assert!(
            d.starts_with("--- a/etc/x.conf\n+++ b/etc/x.conf\n@@ -0,0 +1,2 @@\n"),
            "{d}"
        );
        assert!(d.contains("+MountFlags=\n"));
    }

    #[test]
    fn no_colour_means_no_escape_codes() {
        let d = diff("/x", b"a\n", b"b\n");
        assert_eq!(paint_diff(&d, Style { color: false }), d);
        assert!(paint_diff(&d, Style { color: true }).contains("\x1b[31m-a"));
    }
}
