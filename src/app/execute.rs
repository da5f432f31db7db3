//! The executor: the only code that writes, reloads, asks for consent, restarts, verifies and
//! rolls back. Every mutating command decides a [`Rollout`] first and hands it here.

use super::*;
use crate::netns::{self, Class};
use crate::rollout::{Consent, Rollout, Target, Writes};
use crate::state::Reverted;
use crate::verify::CheckKind;

/// What a restart would stop, as the Docker Engine API says (read-only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Impact {
    /// Running containers (None: docker did not answer).
    pub running_containers: Option<u64>,
    /// `live-restore` on (None: docker did not answer).
    pub live_restore: Option<bool>,
    /// Why the numbers are missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Impact {
    /// One sentence for the prompt and the preview.
    pub fn sentence(&self) -> String {
        match (self.running_containers, self.live_restore) {
            (Some(n), Some(true)) => format!(
                "docker runs {n} container(s); live-restore is on, so they keep running through the restart, but their network namespaces stay unreachable from the host until each is restarted"
            ),
            (Some(n), _) => format!(
                "docker runs {n} container(s); live-restore is off, so restarting docker stops them all"
            ),
            _ => format!(
                "restarting docker stops its running containers unless live-restore is on (the Docker Engine API did not answer: {})",
                self.note.as_deref().unwrap_or("no reply")
            ),
        }
    }
}

/// Ask the Docker Engine API what a restart of docker would stop.
pub(super) fn impact(ctx: &Ctx, units: &[String]) -> Option<Impact> {
    if ctx.offline || !units.iter().any(|u| crate::unitname::is_docker(u)) {
        return None;
    }
    Some(match crate::docker::info(&ctx.docker_sock) {
        Ok(i) => Impact {
            running_containers: Some(i.containers_running),
            live_restore: Some(i.live_restore),
            note: None,
        },
        Err(e) => Impact {
            running_containers: None,
            live_restore: None,
            note: Some(e.to_string()),
        },
    })
}

/// A restart that was done.
#[derive(Debug, Clone)]
pub(super) struct Restarted {
    pub unit: String,
    pub job: JobOutcome,
    pub active: crate::manager::ActiveState,
}

/// Why the run stopped short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// Consent withheld before anything was written.
    NoConsent,
    /// Anything else.
    Failed,
}

/// What the executor did.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Files were written (and are still written, unless rolled back).
    pub written: bool,
    /// For a revert: what was put back.
    pub reverted: Vec<Reverted>,
    pub reloaded: bool,
    pub restarted: Vec<Restarted>,
    /// Restarts left for later (--no-restart), with the reason in the report.
    pub deferred: Vec<String>,
    /// Per unit, the checks after the run.
    pub verify: Vec<(String, VerifyReport)>,
    /// For set/unset: systemd's values compared with the files.
    pub settings: Vec<crate::settings::Reported>,
    /// Namespaces still held in another mount namespace after the restart.
    pub held: Vec<netns::Entry>,
    pub rolled_back: bool,
    /// Set when the run failed; the report carries it.
    pub error: Option<(Stop, String)>,
    /// What a restart stops (asked before a restart).
    pub impact: Option<Impact>,
}

impl Outcome {
    /// The exit status: 1 failed, 4 done but namespaces still unreachable, else 0.
    pub fn exit(&self) -> i32 {
        if self.error.is_some() {
            1
        } else if !self.held.is_empty() {
            EXIT_UNREACHABLE
        } else {
            0
        }
    }
    /// `docker restart NAME...` for the containers whose namespaces are still held.
    pub fn advice(&self) -> Vec<String> {
        netns::restart_advice(&self.held).into_iter().collect()
    }
}

/// The consent flags of a command.
pub(super) struct Flags {
    pub consent: Consent,
    pub timeout: Duration,
    /// How to give consent, and how to leave the restart for later, e.g. "with --yes" and
    /// "with --no-restart".
    pub yes_hint: &'static str,
    pub defer_hint: &'static str,
}

/// Carry out a rollout.
pub(super) fn execute(ctx: &Ctx, mgr: Option<&mut Manager>, r: &Rollout, flags: &Flags) -> Outcome {
    let mut out = Outcome::default();
    let w = Writer::new(&ctx.root);
    let restarts = r.restart_units();
    let mut go = false;
    if mgr.is_some() && !restarts.is_empty() {
        out.impact = impact(ctx, &restarts);
        let what = out
            .impact
            .as_ref()
            .map(|i| format!(" {}.", sentence_case(&i.sentence())))
            .unwrap_or_default();
        match flags.consent {
            Consent::Granted => go = true,
            Consent::Deferred => out.deferred = restarts.clone(),
            Consent::Refused => {
                out.error = Some((
                    Stop::NoConsent,
                    format!(
                        "{} must be restarted and there is no terminal to ask on: nothing written. Run again {} to restart it, or {} to write and reload now and restart later.{what}",
                        restarts.join(" and "),
                        flags.yes_hint,
                        flags.defer_hint
                    ),
                ));
                return out;
            }
            Consent::Ask => {
                let q = format!("Restart {} now?{what}", restarts.join(" and "));
                match (ctx.ask)(&q) {
                    Ok(true) => go = true,
                    Ok(false) => {
                        out.error = Some((
                            Stop::NoConsent,
                            format!("not confirmed: nothing written (run again {} to write and reload without restarting)", flags.defer_hint),
                        ));
                        return out;
                    }
                    Err(e) => {
                        out.error = Some((Stop::NoConsent, format!("{e:#}: nothing written")));
                        return out;
                    }
                }
            }
        }
    }

    // Write, all or nothing.
    let mut applied = None;
    match &r.writes {
        Writes::Nothing => {}
        Writes::Apply(changes) => {
            let tagged: Vec<(&str, &FileChange)> =
                changes.iter().map(|(u, c)| (u.as_str(), c)).collect();
            match state::apply_changes(&w, &tagged, &r.copies) {
                Ok(a) => {
                    applied = Some(a);
                    out.written = true;
                }
                Err(e) => {
                    out.error = Some((Stop::Failed, format!("writing the override: {e:#}")));
                    return out;
                }
            }
        }
        Writes::Revert(units) => match state::revert(&w, units, false) {
            Ok(done) => {
                out.written = done.iter().any(|d| d.action != state::RevertAction::Skip);
                out.reverted = done;
            }
            Err(e) => {
                out.error = Some((Stop::Failed, format!("{e:#}")));
                return out;
            }
        },
    }
    let Some(m) = mgr else {
        return out; // offline: files only
    };

    let fail = |m: &mut Manager, out: &mut Outcome, why: String| {
        let mut msg = why;
        if r.rollback {
            if let Some(a) = &applied {
                let restarted: Vec<String> = out.restarted.iter().map(|x| x.unit.clone()).collect();
                let (what, ok) = restore(m, a, &w, &restarted, flags.timeout);
                msg.push_str(&what);
                out.rolled_back = ok;
            }
        } else if out.written {
            msg.push_str("; the files stay as restored");
        }
        out.error = Some((Stop::Failed, msg));
    };

    if r.reload {
        if let Err(e) = m.reload() {
            fail(m, &mut out, format!("daemon-reload failed: {e:#}"));
            return out;
        }
        out.reloaded = true;
    }
    // systemd must now report what the files say.
    for t in &r.targets {
        match loaded_as_planned(ctx, m, t) {
            Ok(None) => {}
            Ok(Some(why)) => {
                fail(m, &mut out, why);
                return out;
            }
            Err(e) => {
                fail(m, &mut out, format!("{e:#}"));
                return out;
            }
        }
    }
    if go {
        for u in &restarts {
            let outcome = match m.restart(u, flags.timeout) {
                Ok(o) => o,
                Err(e) => {
                    out.restarted.push(Restarted {
                        unit: u.clone(),
                        job: JobOutcome::Vanished,
                        active: Default::default(),
                    });
                    fail(m, &mut out, format!("restarting {u} failed: {e:#}"));
                    return out;
                }
            };
            // Restarted (or on its way) before anything else is asked: a rollback must know.
            out.restarted.push(Restarted {
                unit: u.clone(),
                job: outcome.clone(),
                active: Default::default(),
            });
            let st = match m.unit(u) {
                Ok(st) => st,
                Err(e) => {
                    fail(m, &mut out, format!("{e:#}"));
                    return out;
                }
            };
            if let Some(r) = out.restarted.last_mut() {
                r.active = st.active_state.clone();
            }
            if outcome != JobOutcome::Done || st.active_state != crate::manager::ActiveState::Active
            {
                let why = format!(
                    "{u} did not come back after the restart (job {}, ActiveState={}, Result={})",
                    outcome.describe(),
                    st.active_state,
                    st.result
                );
                fail(m, &mut out, why);
                return out;
            }
        }
    }
    // Verify, with evidence. A failed MountFlags or namespace check undoes the run unless a
    // warned-about sandboxing setting explains it; namespaces that live-restore containers
    // still hold are reported with the command that helps, never undone.
    match verify_targets(ctx, m, r, &out.deferred) {
        Ok((verify, settings, held)) => {
            out.verify = verify;
            out.settings = settings;
            out.held = held;
        }
        Err(e) => {
            fail(m, &mut out, format!("{e:#}"));
            return out;
        }
    }
    let failed: Vec<String> = out
        .verify
        .iter()
        .flat_map(|(_, v)| v.checks.iter())
        .filter(|c| !c.ok && matches!(c.kind, CheckKind::MountFlags | CheckKind::MainNamespace))
        .filter(|c| !c.explained)
        .map(|c| format!("{} ({})", c.check, c.evidence))
        .collect();
    if !failed.is_empty() {
        fail(
            m,
            &mut out,
            format!("verification failed: {}", failed.join("; ")),
        );
        return out;
    }
    if let Some(bad) = out.settings.iter().find(|v| v.agrees == Some(false)) {
        let why = format!(
            "systemd reports {}={}, not what the files now say",
            bad.property, bad.value
        );
        fail(m, &mut out, why);
    }
    out
}

/// "restarting docker ..." -> "Restarting docker ..."
fn sentence_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// After the reload: does systemd report the target's values with dropfix's files loaded?
/// Some(reason) when it does not.
fn loaded_as_planned(ctx: &Ctx, m: &mut Manager, t: &Target) -> Result<Option<String>> {
    match t {
        Target::MountFlags {
            unit,
            value,
            loaded,
            ..
        } => {
            let st = m.unit(unit)?;
            let got = st.mount_flags.and_then(MountFlags::from_bus);
            let not_loaded: Vec<&str> = loaded
                .iter()
                .filter(|p| {
                    !same_file(&ctx.root, &st.fragment_path, p)
                        && !st.drop_in_paths.iter().any(|d| same_file(&ctx.root, d, p))
                })
                .map(|p| p.as_str())
                .collect();
            if got == Some(*value) && not_loaded.is_empty() {
                return Ok(None);
            }
            Ok(Some(format!(
                "{unit}: after daemon-reload systemd reports MountFlags={} (expected {}){}",
                got.map_or_else(
                    || st
                        .mount_flags
                        .map_or("(none)".to_string(), |v| v.to_string()),
                    |g| g.describe().to_string()
                ),
                value.describe(),
                if not_loaded.is_empty() {
                    String::new()
                } else {
                    format!(", and it did not load {}", not_loaded.join(", "))
                }
            )))
        }
        Target::Settings { unit, expect } => {
            let props = m.unit_properties(unit)?;
            let bad = expect
                .iter()
                .filter_map(|s| crate::settings::compare(s, &props))
                .find(|v| v.agrees == Some(false));
            Ok(bad.map(|b| {
                format!(
                    "after daemon-reload systemd reports {}={}, not what the files now say",
                    b.property, b.value
                )
            }))
        }
        Target::Restored { .. } => Ok(None),
    }
}

type Verified = (
    Vec<(String, VerifyReport)>,
    Vec<crate::settings::Reported>,
    Vec<netns::Entry>,
);

/// The checks after the run, per target. A unit whose restart was left for later still runs
/// the old process: only systemd's loaded value is checked for it.
fn verify_targets(
    ctx: &Ctx,
    m: &mut Manager,
    r: &Rollout,
    deferred: &[String],
) -> Result<Verified> {
    let mut verify = Vec::new();
    let mut settings = Vec::new();
    let mut held = Vec::new();
    for t in &r.targets {
        match t {
            Target::MountFlags {
                unit, namespacing, ..
            } => {
                let st = m.unit(unit)?;
                let process = !deferred.contains(unit);
                let (v, h) = verify_mount_flags(ctx, unit, &st, namespacing, process);
                held.extend(h);
                verify.push((unit.clone(), v));
            }
            Target::Settings { unit, expect } => {
                let props = m.unit_properties(unit)?;
                settings.extend(
                    expect
                        .iter()
                        .filter_map(|s| crate::settings::compare(s, &props)),
                );
            }
            Target::Restored { .. } => {}
        }
    }
    Ok((verify, settings, held))
}

/// systemd's value, the main process's namespace, and every docker netns entry classified.
pub(super) fn verify_mount_flags(
    ctx: &Ctx,
    unit: &str,
    st: &UnitState,
    namespacing: &[String],
    process: bool,
) -> (VerifyReport, Vec<netns::Entry>) {
    let mut checks = Vec::new();
    let flags = st.mount_flags.and_then(MountFlags::from_bus);
    checks.push(Check {
        kind: CheckKind::MountFlags,
        check: format!("{unit}: systemd reports MountFlags unset"),
        ok: flags == Some(MountFlags::Unset),
        explained: false,
        evidence: format!(
            "Service.MountFlags={} = {}",
            st.mount_flags.map_or("?".into(), |v| v.to_string()),
            flags.map_or("unknown", |f| f.describe())
        ),
    });
    let mut held = Vec::new();
    // Only a unit with a main process has a namespace to check (a socket or mount has none).
    if st.is_running() && process && st.main_pid != 0 {
        let mut c = verify::same_mount_ns_as_pid1(&ctx.proc_root, unit, st.main_pid);
        if !c.ok && !namespacing.is_empty() {
            c.explained = true;
            c.evidence
                .push_str(&format!("; kept apart by {}", namespacing.join(", ")));
        }
        checks.push(c);
        // docker's sandboxes, for docker's units (other services' namespaces: `dropfix doctor`).
        let docker = crate::unitname::is_docker(unit);
        let containers = if docker {
            crate::docker::lookup(&ctx.docker_sock, ctx.root.host_root()).list
        } else {
            Vec::new()
        };
        let dirs: &[&str] = if docker {
            &verify::NETNS_DIRS[..1]
        } else {
            &[]
        };
        for e in netns::classify_dirs(&ctx.proc_root, dirs, &containers) {
            let (ok, evidence) = match e.class {
                Class::Enterable => (true, "an nsfs mount in PID 1's mount namespace".to_string()),
                Class::Stale => (
                    true,
                    "a plain file no process holds: a leftover of a stopped container, harmless".to_string(),
                ),
                Class::Held => (
                    false,
                    format!(
                        "held in another mount namespace by {}{}: restart the container to make it reachable",
                        e.holders
                            .first()
                            .map(|h| format!("pid {} ({})", h.pid, h.command))
                            .unwrap_or_else(|| "a live process".into()),
                        e.container
                            .as_ref()
                            .map(|c| format!(", container {} ({})", c.name, short_id(&c.id)))
                            .unwrap_or_default()
                    ),
                ),
            };
            checks.push(Check {
                kind: CheckKind::Netns,
                check: format!("{} is enterable from the host", e.path),
                ok,
                explained: false,
                evidence,
            });
            if e.class == Class::Held {
                held.push(e);
            }
        }
    }
    (
        VerifyReport {
            ok: checks.iter().all(|c| c.ok),
            checks,
        },
        held,
    )
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Put the previous files back, reload, and restart the units already restarted with the new
/// ones; returns what happened, to be appended to the reason for rolling back.
fn restore(
    m: &mut Manager,
    applied: &state::Applied,
    w: &Writer,
    restarted: &[String],
    timeout: Duration,
) -> (String, bool) {
    // Without the system bus systemd cannot reload: undoing the files alone would leave them
    // disagreeing with what systemd has loaded. Leave everything as it is, and say so.
    if m.version().is_err() {
        let state = if restarted.is_empty() {
            "the override stays written (whether systemd loaded it, the lost reload did not say)"
                .to_string()
        } else {
            format!(
                "the override stays written and loaded, and systemd finishes the restart of {} by itself",
                restarted.join(" and ")
            )
        };
        return (
            format!(
                "; nothing undone: the system bus is gone, so {state}; check `systemctl status`, then run dropfix again once the bus is back"
            ),
            false,
        );
    }
    let mut ok = true;
    let mut msg = match applied.rollback(w) {
        Ok(()) => "; restored the previous files".to_string(),
        Err(e) => {
            ok = false;
            format!("; restoring the previous files failed: {e:#}")
        }
    };
    match m.reload() {
        Ok(()) => msg.push_str(", reloaded systemd"),
        Err(e) => {
            ok = false;
            msg.push_str(&format!(", reload failed: {e:#}"))
        }
    }
    for u in restarted {
        let back = m.restart(u, timeout);
        let active = m.unit(u).map(|s| s.active_state).unwrap_or_default();
        match back {
            Ok(JobOutcome::Done) if active == crate::manager::ActiveState::Active => {
                msg.push_str(&format!(", restarted {u} with them: it is active again"))
            }
            Ok(o) => {
                ok = false;
                msg.push_str(&format!(
                    ", restarting {u} with them gave {} (ActiveState={active})",
                    o.describe()
                ))
            }
            Err(e) => {
                ok = false;
                msg.push_str(&format!(", restarting {u} with them failed: {e:#}"))
            }
        }
    }
    (msg, ok)
}
