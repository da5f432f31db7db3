//! Rollouts: what a mutating command (`fix`, `revert`, `set`, `unset`) will do, decided
//! purely from what was read, before anything is touched. One executor (`app::execute`) is
//! the only code that then writes, reloads, asks, restarts, verifies and rolls back.

use crate::effective::MountFlags;
use crate::manager::UnitState;
use crate::plan::FileChange;
use crate::settings::Setting;
use crate::state::Provenance;

/// Whether a restart may go ahead, from the flags and whether a person can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// `--yes`: restart without asking.
    Granted,
    /// `--no-restart` (or `set` without `--restart`): write and reload, leave the restart.
    Deferred,
    /// A terminal and neither flag: ask, and take no for an answer.
    Ask,
    /// No terminal and neither flag: refuse before anything is written.
    Refused,
}

/// The one consent rule every command that could restart follows.
pub fn consent(yes: bool, defer: bool, tty: bool) -> Consent {
    match (yes, defer, tty) {
        (true, _, _) => Consent::Granted,
        (false, true, _) => Consent::Deferred,
        (false, false, true) => Consent::Ask,
        (false, false, false) => Consent::Refused,
    }
}

/// The files a rollout changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writes {
    /// Nothing to write.
    Nothing,
    /// These changes, each tagged with its unit, in one all-or-nothing step.
    Apply(Vec<(String, FileChange)>),
    /// Put back what dropfix replaced for these units (every unit when empty).
    Revert(Vec<String>),
}

impl Writes {
    /// Anything to write?
    pub fn is_empty(&self) -> bool {
        match self {
            Writes::Nothing => true,
            Writes::Apply(c) => c.is_empty(),
            Writes::Revert(_) => false,
        }
    }
}

/// Why a unit is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its files change in this run.
    FilesChange,
    /// Its files were changed earlier and it still runs the old configuration (a restart that
    /// was declined or deferred then).
    Deferred,
}

/// A unit to restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Unit name.
    pub unit: String,
    /// Why.
    pub why: Why,
}

/// The state a unit must reach; checked after the reload and again after the restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// MountFlags as planned, with dropfix's files loaded.
    MountFlags {
        /// Unit name.
        unit: String,
        /// The value systemd must report.
        value: MountFlags,
        /// Files that systemd must list as the fragment or among the drop-ins.
        loaded: Vec<String>,
        /// Other settings that keep the service in a mount namespace of its own (warned
        /// about): a main process outside PID 1's namespace is then expected, not a failure.
        namespacing: Vec<String>,
    },
    /// Settings with these values, as systemd reports them.
    Settings {
        /// Unit name.
        unit: String,
        /// The settings as the files now say, to compare with systemd's properties.
        expect: Vec<Setting>,
    },
    /// Whatever the restored files say: the unit only has to come back.
    Restored {
        /// Unit name.
        unit: String,
    },
}

impl Target {
    /// The unit this target is about.
    pub fn unit(&self) -> &str {
        match self {
            Target::MountFlags { unit, .. }
            | Target::Settings { unit, .. }
            | Target::Restored { unit } => unit,
        }
    }
}

/// Everything one run will do, decided before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Files to write.
    pub writes: Writes,
    /// daemon-reload afterwards (files change, or systemd has not loaded what is on disk).
    pub reload: bool,
    /// Units to restart, in order.
    pub restart: Vec<Restart>,
    /// What each unit must reach.
    pub targets: Vec<Target>,
    /// On a failure after writing, put the previous files back (fix, set, unset); revert
    /// has nothing earlier to go back to and says so instead.
    pub rollback: bool,
    /// What the copies among the writes are made from, recorded with them.
    pub copies: Vec<Provenance>,
}

impl Rollout {
    /// Nothing to write, reload or restart.
    pub fn is_noop(&self) -> bool {
        self.writes.is_empty() && !self.reload && self.restart.is_empty()
    }
    /// The units to restart.
    pub fn restart_units(&self) -> Vec<String> {
        self.restart.iter().map(|r| r.unit.clone()).collect()
    }
}

/// What is known about one unit on a live host when a rollout is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// systemd's view.
    pub state: UnitState,
    /// Whether the main process shares PID 1's mount namespace (None: no process, or it
    /// could not be read).
    pub in_pid1_ns: Option<bool>,
}

impl Live {
    /// MountFlags as systemd has them loaded.
    pub fn loaded_flags(&self) -> Option<MountFlags> {
        self.state.mount_flags.and_then(MountFlags::from_bus)
    }
}

/// Does a running unit still run a configuration older than the one systemd has loaded?
///
/// Derived from the live host, never from dropfix's own files: a process in PID 1's mount
/// namespace while systemd says MountFlags is set (a revert not yet restarted), or a process
/// in a namespace of its own while systemd says MountFlags is unset and nothing else asks for
/// one (a fix not yet restarted).
pub fn runs_stale_namespace(live: &Live, namespaced: bool) -> bool {
    if !live.state.is_running() {
        return false;
    }
    match (live.loaded_flags(), live.in_pid1_ns) {
        (Some(MountFlags::Unset), Some(false)) => !namespaced,
        (Some(f), Some(true)) => f != MountFlags::Unset,
        _ => false,
    }
}

/// Does a running unit predate a settings change made at `changed_us` (µs since the epoch)?
pub fn started_before(live: &Live, changed_us: Option<u64>) -> bool {
    live.state.is_running()
        && matches!(changed_us, Some(t) if live.state.active_enter_us > 0 && live.state.active_enter_us < t)
}

/// One unit of a `fix`, as the decision needs it.
#[derive(Debug, Clone)]
pub struct FixUnit {
    /// Unit name.
    pub unit: String,
    /// The planned file changes.
    pub changes: Vec<FileChange>,
    /// MountFlags once the plan is in force.
    pub after: MountFlags,
    /// Other settings that keep a namespace of its own (`PrivateTmp`, ...).
    pub namespacing: Vec<String>,
    /// Live facts (None offline).
    pub live: Option<Live>,
    /// What the copies among `changes` are made from.
    pub copies: Vec<Provenance>,
}

/// Decide a `fix`: write the plans, reload when anything changes or systemd has not loaded
/// what the files say, restart every running unit whose override unsets MountFlags and that
/// either gets new files or still runs in the namespace of an earlier configuration.
pub fn decide_fix(units: &[FixUnit], extra: &[FileChange]) -> Rollout {
    let mut writes: Vec<(String, FileChange)> = Vec::new();
    for u in units {
        writes.extend(u.changes.iter().map(|c| (u.unit.clone(), c.clone())));
    }
    let owner = units
        .first()
        .map_or_else(|| "docker.service".to_string(), |u| u.unit.clone());
    writes.extend(extra.iter().map(|c| (owner.clone(), c.clone())));
    let files_change = !writes.is_empty();
    let not_loaded = units.iter().any(|u| {
        u.live
            .as_ref()
            .is_some_and(|l| l.loaded_flags() != Some(u.after))
    });
    let mut restart = Vec::new();
    for u in units {
        let Some(live) = &u.live else { continue };
        if !live.state.is_running() || u.after != MountFlags::Unset {
            continue;
        }
        let why = if !u.changes.is_empty() {
            Some(Why::FilesChange)
        } else if live.loaded_flags() != Some(MountFlags::Unset)
            || runs_stale_namespace(live, !u.namespacing.is_empty())
        {
            Some(Why::Deferred)
        } else {
            None
        };
        if let Some(why) = why {
            restart.push(Restart {
                unit: u.unit.clone(),
                why,
            });
        }
    }
    Rollout {
        writes: if files_change {
            Writes::Apply(writes)
        } else {
            Writes::Nothing
        },
        reload: files_change || not_loaded,
        restart,
        targets: units
            .iter()
            .map(|u| Target::MountFlags {
                unit: u.unit.clone(),
                value: u.after,
                loaded: u
                    .changes
                    .iter()
                    .filter(|c| c.action != crate::plan::Action::Remove)
                    .map(|c| c.path.clone())
                    .collect(),
                namespacing: u.namespacing.clone(),
            })
            .collect(),
        rollback: true,
        copies: units.iter().flat_map(|u| u.copies.clone()).collect(),
    }
}

/// Decide a `revert`: put the files back for `units` (all when empty), reload when anything
/// is restored, and restart every running unit that is restored or that still runs in the
/// namespace of the configuration before (a restart deferred by an earlier revert). With
/// `tidy` the revert step runs even when no file changes, so dropfix's records and the
/// leftovers of an interrupted run are cleared.
pub fn decide_revert(
    units: &[String],
    restored: &[String],
    tidy: bool,
    live: &[(String, Live)],
) -> Rollout {
    let mut restart = Vec::new();
    for (unit, l) in live {
        if !l.state.is_running() {
            continue;
        }
        if restored.contains(unit) {
            restart.push(Restart {
                unit: unit.clone(),
                why: Why::FilesChange,
            });
        } else if runs_stale_namespace(l, false) {
            restart.push(Restart {
                unit: unit.clone(),
                why: Why::Deferred,
            });
        }
    }
    Rollout {
        writes: if restored.is_empty() && !tidy {
            Writes::Nothing
        } else {
            Writes::Revert(units.to_vec())
        },
        reload: !restored.is_empty(),
        restart,
        targets: live
            .iter()
            .map(|(u, _)| Target::Restored { unit: u.clone() })
            .collect(),
        rollback: false,
        copies: Vec::new(),
    }
}

/// Decide a `set` or `unset`: write dropfix's settings drop-in, reload, and restart the unit
/// when it runs and either the change is new or it started before an earlier one.
pub fn decide_settings(
    unit: &str,
    changes: Vec<FileChange>,
    expect: Vec<Setting>,
    live: Option<&Live>,
    changed_earlier_us: Option<u64>,
) -> Rollout {
    let files_change = !changes.is_empty();
    let restart = match live {
        Some(l) if l.state.is_running() && files_change => vec![Restart {
            unit: unit.to_string(),
            why: Why::FilesChange,
        }],
        Some(l) if started_before(l, changed_earlier_us) => vec![Restart {
            unit: unit.to_string(),
            why: Why::Deferred,
        }],
        _ => Vec::new(),
    };
    Rollout {
        writes: if files_change {
            Writes::Apply(changes.into_iter().map(|c| (unit.to_string(), c)).collect())
        } else {
            Writes::Nothing
        },
        reload: files_change,
        restart,
        targets: vec![Target::Settings {
            unit: unit.to_string(),
            expect,
        }],
        rollback: true,
        copies: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::ActiveState;
    use crate::plan::Action;

    #[test]
    fn consent_table() {
        // (yes, defer, tty) -> consent
        let table = [
            ((true, false, false), Consent::Granted),
            ((true, false, true), Consent::Granted),
            ((true, true, false), Consent::Granted),
            ((false, true, false), Consent::Deferred),
            ((false, true, true), Consent::Deferred),
            ((false, false, true), Consent::Ask),
            ((false, false, false), Consent::Refused),
        ];
        for ((y, d, t), want) in table {
            assert_eq!(consent(y, d, t), want, "yes={y} defer={d} tty={t}");
        }
    }

    fn live(active: &str, flags: u64, in_pid1: Option<bool>) -> Live {
        Live {
            state: UnitState {
                id: "docker.service".into(),
                active_state: ActiveState::parse(active),
                mount_flags: Some(flags),
                main_pid: 42,
                ..UnitState::default()
            },
            in_pid1_ns: in_pid1,
        }
    }

    fn change() -> FileChange {
        FileChange {
            path: "/etc/systemd/system/docker.service.d/zz-dropfix-mountflags.conf".into(),
            action: Action::Create,
            old: vec![],
            new: b"[Service]\nMountFlags=\n".to_vec(),
            purpose: "test".into(),
            link: None,
        }
    }

    fn fix_unit(changes: Vec<FileChange>, live: Option<Live>) -> FixUnit {
        FixUnit {
            unit: "docker.service".into(),
            changes,
            after: MountFlags::Unset,
            namespacing: vec![],
            live,
            copies: vec![],
        }
    }

    const SLAVE: u64 = 524_288;

    #[test]
    fn fix_decisions() {
        struct Case {
            name: &'static str,
            unit: FixUnit,
            writes: bool,
            reload: bool,
            restart: Option<Why>,
        }
        let cases = [
            Case {
                name: "broken and running: write, reload, restart",
                unit: fix_unit(vec![change()], Some(live("active", SLAVE, Some(false)))),
                writes: true,
                reload: true,
                restart: Some(Why::FilesChange),
            },
            Case {
                name: "broken and stopped: write, reload, no restart",
                unit: fix_unit(vec![change()], Some(live("inactive", SLAVE, None))),
                writes: true,
                reload: true,
                restart: None,
            },
            Case {
                name: "files fixed, not loaded: reload and restart",
                unit: fix_unit(vec![], Some(live("active", SLAVE, Some(false)))),
                writes: false,
                reload: true,
                restart: Some(Why::Deferred),
            },
            Case {
                name: "loaded but still in its own namespace: the deferred restart",
                unit: fix_unit(vec![], Some(live("active", 0, Some(false)))),
                writes: false,
                reload: false,
                restart: Some(Why::Deferred),
            },
            Case {
                name: "fixed and restarted: nothing",
                unit: fix_unit(vec![], Some(live("active", 0, Some(true)))),
                writes: false,
                reload: false,
                restart: None,
            },
            Case {
                name: "offline: write (the reload is for whoever boots the image)",
                unit: fix_unit(vec![change()], None),
                writes: true,
                reload: true,
                restart: None,
            },
        ];
        for c in cases {
            let r = decide_fix(std::slice::from_ref(&c.unit), &[]);
            assert_eq!(!r.writes.is_empty(), c.writes, "{}", c.name);
            assert_eq!(r.reload, c.reload, "{}", c.name);
            assert_eq!(r.restart.first().map(|x| x.why), c.restart, "{}", c.name);
            assert!(r.rollback, "{}", c.name);
        }
    }

    #[test]
    fn a_namespacing_setting_explains_its_own_namespace() {
        let mut u = fix_unit(vec![], Some(live("active", 0, Some(false))));
        u.namespacing = vec!["PrivateTmp".into()];
        assert!(decide_fix(&[u], &[]).is_noop());
    }

    #[test]
    fn an_override_that_does_not_unset_restarts_nothing() {
        let mut u = fix_unit(vec![change()], Some(live("active", SLAVE, Some(false))));
        u.after = MountFlags::Slave;
        let r = decide_fix(&[u], &[]);
        assert!(r.restart.is_empty());
        assert!(r.reload);
    }

    #[test]
    fn revert_decisions() {
        let restored = ["docker.service".to_string()];
        // Files restored and docker running: restart.
        let r = decide_revert(
            &[],
            &restored,
            true,
            &[("docker.service".into(), live("active", 0, Some(true)))],
        );
        assert_eq!(r.writes, Writes::Revert(vec![]));
        assert!(r.reload);
        assert_eq!(r.restart[0].why, Why::FilesChange);
        assert!(!r.rollback);
        // Nothing left to restore, but docker runs in PID 1's namespace while systemd has
        // MountFlags=slave loaded: the restart an earlier revert deferred.
        let r = decide_revert(
            &[],
            &[],
            false,
            &[("docker.service".into(), live("active", SLAVE, Some(true)))],
        );
        assert!(r.writes.is_empty());
        assert!(!r.reload);
        assert_eq!(r.restart[0].why, Why::Deferred);
        // Nothing restored and docker in its own namespace as the flags say: nothing.
        let r = decide_revert(
            &[],
            &[],
            false,
            &[("docker.service".into(), live("active", SLAVE, Some(false)))],
        );
        assert!(r.is_noop());
    }

    #[test]
    fn settings_decisions() {
        let mut l = live("active", 0, Some(true));
        l.state.active_enter_us = 1_000;
        // A new change on a running unit: restart.
        let r = decide_settings("docker.service", vec![change()], vec![], Some(&l), None);
        assert_eq!(r.restart[0].why, Why::FilesChange);
        // No change now, but the unit started before the last one: the deferred restart.
        let r = decide_settings("docker.service", vec![], vec![], Some(&l), Some(2_000));
        assert_eq!(r.restart[0].why, Why::Deferred);
        assert!(!r.reload);
        // Started after the change: nothing.
        let r = decide_settings("docker.service", vec![], vec![], Some(&l), Some(500));
        assert!(r.is_noop());
        // Stopped: no restart.
        let stopped = live("inactive", 0, None);
        let r = decide_settings(
            "docker.service",
            vec![change()],
            vec![],
            Some(&stopped),
            None,
        );
        assert!(r.restart.is_empty());
    }
}
