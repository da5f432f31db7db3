//! Metrics: a diagnosis -> Prometheus text exposition format (0.0.4), the format node_exporter's
//! textfile collector reads. Pure: the clock and the systemd version are handed in.

use crate::doctor::{Diagnosis, Finding, FindingId, Status};
use crate::netns::Class;
use std::fmt::Write as _;

/// What a metrics file says besides the diagnosis.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// When doctor ran, in seconds since the epoch.
    pub now_unix: u64,
    /// systemd's major version, when known.
    pub systemd_version: Option<u32>,
    /// The namespace directories doctor looks at, in order.
    pub netns_dirs: &'a [&'a str],
    /// Whether namespace files were looked at (a live host, as root); otherwise no netns
    /// series are written rather than zeros that would read as "none".
    pub netns_checked: bool,
}

/// A label value, escaped as the exposition format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes metric families: HELP and TYPE once, then the samples.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn common(out: &mut Out, c: &Context, success: bool) {
    out.family(
        "dropfix_doctor_success",
        "1 when dropfix doctor could check the host, 0 when it failed (the other dropfix_ series are then absent).",
    );
    out.sample("dropfix_doctor_success", &[], u64::from(success));
    out.family(
        "dropfix_last_run_timestamp_seconds",
        "When dropfix doctor last ran, in seconds since the epoch.",
    );
    out.sample("dropfix_last_run_timestamp_seconds", &[], c.now_unix);
    out.family(
        "dropfix_build_info",
        "The dropfix version that wrote this file.",
    );
    out.sample(
        "dropfix_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
}

/// The metrics for a diagnosis.
pub fn doctor(d: &Diagnosis, c: &Context) -> String {
    let mut out = Out(String::new());
    common(&mut out, c, true);
    out.family(
        "dropfix_healthy",
        "1 when dropfix doctor found no problem, 0 otherwise.",
    );
    out.sample("dropfix_healthy", &[], u64::from(d.healthy));

    if let Some(v) = c.systemd_version {
        out.family(
            "dropfix_systemd_info",
            "The systemd version dropfix planned for.",
        );
        out.sample("dropfix_systemd_info", &[("version", &v.to_string())], 1);
    }

    // Every status of every finding id seen in a scope, zeros included, so that a problem
    // going away sets its series to 0 instead of ending it.
    out.family(
        "dropfix_findings",
        "dropfix doctor's findings by unit (none for host-wide ones), id and status.",
    );
    let scopes = d
        .units
        .iter()
        .map(|u| (Some(u.unit.as_str()), &u.findings))
        .chain(std::iter::once((None, &d.host)));
    for (unit, findings) in scopes {
        let mut ids: Vec<FindingId> = Vec::new();
        for f in findings.iter() {
            if !ids.contains(&f.id) {
                ids.push(f.id);
            }
        }
        for id in ids {
            for status in Status::ALL {
                let n = findings
                    .iter()
                    .filter(|f| f.id == id && f.status == status)
                    .count();
                let mut labels = Vec::with_capacity(3);
                if let Some(u) = unit {
                    labels.push(("unit", u));
                }
                labels.push(("id", id.as_str()));
                labels.push(("status", status.as_str()));
                out.sample("dropfix_findings", &labels, n as u64);
            }
        }
    }

    out.family(
        "dropfix_restart_pending",
        "1 when the unit's running process predates its loaded configuration (a restart was left for later).",
    );
    for u in &d.units {
        let pending = u
            .findings
            .iter()
            .any(|f| f.id == FindingId::RestartPending && f.status != Status::Ok);
        out.sample(
            "dropfix_restart_pending",
            &[("unit", &u.unit)],
            u64::from(pending),
        );
    }

    if c.netns_checked {
        out.family(
            "dropfix_netns_entries",
            "Network-namespace files by directory and class (enterable from the host, stale leftover, held in another mount namespace).",
        );
        let entries: Vec<&crate::netns::Entry> = d
            .host
            .iter()
            .filter_map(|f: &Finding| f.netns.as_ref())
            .collect();
        for dir in c.netns_dirs {
            for class in Class::ALL {
                let n = entries
                    .iter()
                    .filter(|e| e.class == class && crate::root::parent(&e.path) == *dir)
                    .count();
                out.sample(
                    "dropfix_netns_entries",
                    &[("directory", dir), ("class", class.as_str())],
                    n as u64,
                );
            }
        }
    }
    out.0
}

/// The metrics when doctor could not check: success 0 and the time, nothing stale.
pub fn doctor_failed(c: &Context) -> String {
    let mut out = Out(String::new());
    common(&mut out, c, false);
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn failed_run_has_success_zero_and_the_time_only() {
        let c = Context {
            now_unix: 1_700_000_000,
            systemd_version: Some(252),
            netns_dirs: &["/run/netns"],
            netns_checked: true,
        };
        let text = doctor_failed(&c);
        assert!(text.contains("\ndropfix_doctor_success 0\n"), "{text}");
        assert!(text.contains("\ndropfix_last_run_timestamp_seconds 1700000000\n"));
        assert!(!text.contains("dropfix_healthy"));
    }
}
