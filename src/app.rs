//! The pipeline, one line a stage: discover -> effective -> plan -> render -> apply ->
//! manager (reload, restart) -> verify. The only place that sequences side effects.

use crate::apply::Writer;
use crate::cli::{Cli, Color, Command, FixArgs, Format, RevertArgs, StrategyArg};
use crate::discover::{self, Missing, SearchDir};
use crate::doctor;
use crate::effective::MountFlags;
use crate::inspect;
use crate::lock::Lock;
use crate::manager::{JobOutcome, ServiceManager, Systemd, UnitState};
use crate::plan::{self, FileChange, Strategy, UnitPlan};
use crate::render::{self, FileReport, FixReport, RevertReport, Style, UnitReport, VerifyReport};
use crate::root::Root;
use crate::scan;
use crate::settings::{self, Op};
use crate::state::{self, Applied};
use crate::unitname::UnitName;
use crate::verify::{self, Check};
use crate::version::{self, Version};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

/// Exit status: a change is pending (`--check`).
pub const EXIT_PENDING: i32 = 3;

/// Default units: docker.service always, early-docker.service where it exists (CoreOS 647-1192).
const DEFAULT_UNITS: &[&str] = &["docker.service", "early-docker.service"];

/// Run a parsed command line; returns the exit status.
pub fn run(cli: Cli) -> Result<i32> {
    let style = Style {
        color: use_color(cli.global.color),
    };
    let root_path = cli.global.root.clone().unwrap_or_else(|| "/".into());
    let root = Root::new(&root_path)?;
    let ctx = Ctx {
        root,
        offline: cli.global.root.is_some(),
        format: cli.global.format,
        style,
    };
    match cli.command {
        Command::Fix(args) => fix(&ctx, &args),
        Command::Revert(args) => revert(&ctx, &args),
        Command::Doctor(args) => doctor(&ctx, &args),
        Command::Scan(args) => scan(&ctx, &args),
        Command::Show(args) => show(&ctx, &args),
        Command::Set(args) => {
            let unit = one_unit(&args.unit)?;
            let ops = args
                .assignments
                .iter()
                .map(|a| settings::parse_op(unit.unit_type(), a, true, args.reset))
                .collect::<std::result::Result<Vec<_>, String>>()
                .map_err(anyhow::Error::msg)?;
            edit_settings(
                &ctx,
                "set",
                &unit,
                &ops,
                args.dry_run,
                args.check,
                &args.restart,
            )
        }
        Command::Unset(args) => {
            let unit = one_unit(&args.unit)?;
            let ops = args
                .keys
                .iter()
                .map(|a| settings::parse_op(unit.unit_type(), a, false, false))
                .collect::<std::result::Result<Vec<_>, String>>()
                .map_err(anyhow::Error::msg)?;
            edit_settings(
                &ctx,
                "unset",
                &unit,
                &ops,
                args.dry_run,
                args.check,
                &args.restart,
            )
        }
        Command::Generate(g) => crate::cli::generate(&g.what)
            .context("writing generated text")
            .map(|()| 0),
    }
}

struct Ctx {
    root: Root,
    offline: bool,
    format: Format,
    style: Style,
}

impl Ctx {
    fn out_fix(&self, r: &FixReport) -> Result<()> {
        match self.format {
            Format::Json => print_json(r),
            Format::Text => print(&render::fix_text(r, self.style)),
        }
    }
    fn out_revert(&self, r: &RevertReport) -> Result<()> {
        match self.format {
            Format::Json => print_json(r),
            Format::Text => print(&render::revert_text(r, self.style)),
        }
    }
}

fn use_color(c: Color) -> bool {
    match c {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes()).context("writing output")?;
    out.flush().context("writing output")
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).context("encoding JSON")?;
    s.push('\n');
    print(&s)
}

fn parse_units(given: &[String]) -> Result<Vec<UnitName>> {
    given
        .iter()
        .map(|u| UnitName::from_user(u).map_err(anyhow::Error::msg))
        .collect()
}

fn root_label(root: &Root) -> String {
    if root.is_host() {
        "/".into()
    } else {
        root.host_root().display().to_string()
    }
}

fn require_root(what: &str) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("{what} needs root (files in /etc/systemd/system, systemd's reload and restart): run it with sudo, or preview with --dry-run");
    }
    Ok(())
}

/// Connect to systemd on a live host. A preview can go on from the files alone.
fn connect(ctx: &Ctx, preview: bool, notes: &mut Vec<String>) -> Result<Option<Systemd>> {
    if ctx.offline {
        return Ok(None);
    }
    match Systemd::connect() {
        Ok(m) => Ok(Some(m)),
        Err(e) if preview => {
            notes.push(format!("{e:#}; planned from the files alone"));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The systemd version to plan for: the flag, else systemd itself, else the root's files.
fn version_for(
    root: &Root,
    flag: Option<u32>,
    mgr: Option<&mut Systemd>,
) -> Result<Option<Version>> {
    if let Some(major) = flag {
        if major == 0 {
            bail!("--systemd-version 0: not a systemd version");
        }
        return Ok(Some(Version {
            major,
            source: "--systemd-version".into(),
        }));
    }
    if let Some(m) = mgr {
        let v = m.version().context("asking systemd for its version")?;
        if let Some(major) = version::parse_major(&v) {
            return Ok(Some(Version {
                major,
                source: format!("systemd over D-Bus, {v}"),
            }));
        }
    }
    version::detect(root)
}

/// Discover and plan every unit.
fn plan_all(
    root: &Root,
    dirs: &[SearchDir],
    units: &[UnitName],
    explicit: bool,
    version: Option<&Version>,
    strategy: Option<Strategy>,
) -> Result<Vec<UnitPlan>> {
    let mut plans = Vec::new();
    for name in units {
        let found = discover::discover(root, dirs, name, version.map(|v| v.major))
            .with_context(|| format!("reading {name}"))?;
        let d = match found {
            Ok(d) => d,
            // early-docker.service is only looked for: absent or masked, it is left alone.
            Err(Missing::NotFound | Missing::Masked(_))
                if !explicit && name.as_str() != "docker.service" =>
            {
                continue
            }
            Err(Missing::NotFound) => bail!(
                "{name}: unit not found in {} (searched {})",
                root_label(root),
                dirs.iter().map(|d| d.path.as_str()).collect::<Vec<_>>().join(" ")
            ),
            Err(Missing::Masked(p)) => bail!(
                "{name}: unit is masked ({p} is empty or links to /dev/null); unmask it before fixing it"
            ),
        };
        let p =
            plan::plan_unit(&d, version, strategy).with_context(|| format!("planning {name}"))?;
        plans.push(p);
    }
    Ok(plans)
}

fn unit_report(p: &UnitPlan) -> UnitReport {
    UnitReport {
        unit: p.unit.clone(),
        strategy: p.strategy.map_or("none", Strategy::as_str).to_string(),
        systemd_version: p.version.as_ref().map(|v| v.major),
        systemd_version_source: p.version.as_ref().map(|v| v.source.clone()),
        mount_flags_before: p.before.mount_flags.as_str().to_string(),
        mount_flags_after: p.after.mount_flags.as_str().to_string(),
        mount_flags_source: p
            .before
            .decided_by()
            .map(|o| format!("{}:{}", o.path, o.line)),
        warnings: p.warnings.clone(),
        notes: p.notes.clone(),
        files: p.changes.iter().map(file_report).collect(),
        active_state: None,
        restarted: false,
        job_result: None,
        verify: None,
    }
}

fn file_report(c: &FileChange) -> FileReport {
    FileReport {
        path: c.path.clone(),
        action: c.action.as_str().into(),
        diff: render::diff(&c.path, &c.old, &c.new),
    }
}

/// What /run/netns and the tmpfiles.d line are now, and the changes `--link-ip-netns` needs.
/// Offline, an image's /run is covered by a tmpfs at boot: only the tmpfiles.d line counts.
fn plan_netns(root: &Root, offline: bool) -> Result<Vec<FileChange>> {
    use crate::root::Entry;
    let now = if offline {
        None
    } else {
        Some(match root.entry(plan::IP_NETNS)? {
            Entry::Missing => plan::NetnsDir::Missing,
            Entry::Symlink(t) => plan::NetnsDir::Link(t.to_string_lossy().into_owned()),
            Entry::Dir => {
                let names = root.list_dir(plan::IP_NETNS)?;
                if names.is_empty() {
                    plan::NetnsDir::EmptyDir
                } else {
                    plan::NetnsDir::Busy(names)
                }
            }
            Entry::File => plan::NetnsDir::Other,
        })
    };
    let tmpfiles = match root.entry(plan::TMPFILES_NETNS)? {
        Entry::File => Some(root.read(plan::TMPFILES_NETNS)?),
        _ => None,
    };
    plan::plan_ip_netns(now.as_ref(), tmpfiles.as_deref())
}

/// Same file? Paths systemd reports may go through /lib -> /usr/lib and other links.
fn same_file(root: &Root, a: &str, b: &str) -> bool {
    a == b || matches!((root.resolve(a), root.resolve(b)), (Ok(x), Ok(y)) if x == y)
}

/// What systemd reports against what dropfix read; disagreements become warnings.
fn compare_with_systemd(
    root: &Root,
    p: &mut UnitPlan,
    st: &UnitState,
    fragment: &str,
    dropins: &[String],
) {
    if !st.fragment_path.is_empty() && !same_file(root, &st.fragment_path, fragment) {
        p.warnings.push(format!(
            "systemd loaded {} from {}, but the files say {fragment}: a daemon-reload is pending or a generator made the unit",
            p.unit, st.fragment_path
        ));
    }
    let mine: Vec<&String> = dropins.iter().collect();
    let theirs: Vec<&String> = st.drop_in_paths.iter().collect();
    let differs = mine.len() != theirs.len()
        || mine
            .iter()
            .zip(&theirs)
            .any(|(a, b)| !same_file(root, a, b));
    if differs {
        p.warnings.push(format!(
            "systemd applies drop-ins [{}] to {}, the files say [{}]",
            st.drop_in_paths.join(", "),
            p.unit,
            dropins.join(", ")
        ));
    }
    if let Some(bus) = st.mount_flags.and_then(MountFlags::from_bus) {
        if bus != p.before.mount_flags {
            p.warnings.push(format!(
                "systemd reports MountFlags={} for {}, the files say {}: systemd has not loaded the files on disk",
                bus.describe(),
                p.unit,
                p.before.mount_flags.describe()
            ));
        }
    }
}

/// Ask on the terminal; false without one.
fn ask(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

fn restart_question(units: &[String]) -> String {
    format!(
        "Restart {} now? Restarting docker stops its running containers unless live-restore is configured.",
        units.join(" and ")
    )
}

fn is_running(st: &UnitState) -> bool {
    matches!(
        st.active_state.as_str(),
        "active" | "activating" | "reloading"
    )
}

fn fix(ctx: &Ctx, args: &FixArgs) -> Result<i32> {
    let root = &ctx.root;
    let preview = args.dry_run || args.check;
    let explicit = !args.units.is_empty();
    let mut units = if explicit {
        parse_units(&args.units)?
    } else {
        parse_units(
            &DEFAULT_UNITS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )?
    };
    let strategy = args.strategy.map(|s| match s {
        StrategyArg::DropIn => Strategy::DropIn,
        StrategyArg::FullCopy => Strategy::FullCopy,
    });
    // Not root on a live host: say so before anything, even the lock, is touched.
    if !preview && !ctx.offline {
        require_root("dropfix fix")?;
    }
    // One dropfix at a time, from the first look to the last restart: one that waited sees
    // what the other did and has nothing left to do (no second write, reload or restart).
    let _lock = if preview {
        None
    } else {
        Some(Lock::acquire(root)?)
    };
    let mut global_notes = Vec::new();
    let mut mgr = connect(ctx, preview, &mut global_notes)?;
    let version = version_for(root, args.systemd_version, mgr.as_mut())?;
    let dirs = discover::search_path(root)?;

    // Ask systemd first: what it has loaded decides what exists, is masked, and runs.
    let mut live: Vec<UnitState> = Vec::new();
    if let Some(m) = mgr.as_mut() {
        let mut keep = Vec::new();
        for u in &units {
            let st = m
                .unit(u.as_str())
                .with_context(|| format!("asking systemd about {u}"))?;
            match st.load_state.as_str() {
                "masked" | "not-found" if !explicit && u.as_str() != "docker.service" => continue,
                "masked" => bail!("{u}: unit is masked (systemd reports LoadState=masked); unmask it before fixing it"),
                "not-found" if !discover::exists(root, &dirs, u.as_str())? => {
                    bail!("{u}: unit not found (systemd reports LoadState=not-found)")
                }
                _ => {}
            }
            keep.push(u.clone());
            live.push(st);
        }
        units = keep;
    }

    let mut plans = plan_all(root, &dirs, &units, explicit, version.as_ref(), strategy)?;
    // Per plan, what systemd reports about it (None offline).
    let mut states: Vec<Option<UnitState>> = Vec::new();
    for p in plans.iter_mut() {
        let st = live
            .iter()
            .find(|st| st.id == p.unit || st.names.contains(&p.unit))
            .cloned();
        if let Some(st) = &st {
            let found = discover::discover(
                root,
                &dirs,
                &UnitName::parse(&p.unit).map_err(anyhow::Error::msg)?,
                version.as_ref().map(|v| v.major),
            )?;
            if let Ok(d) = found {
                let dropins: Vec<String> = discover::applied(&d.dropins)
                    .iter()
                    .map(|x| x.path.clone())
                    .collect();
                compare_with_systemd(root, p, st, &d.fragment.path, &dropins);
            }
        }
        states.push(st);
    }
    let netns_changes = if args.link_ip_netns {
        plan_netns(root, ctx.offline)?
    } else {
        Vec::new()
    };
    let files_change = plans.iter().any(|p| !p.changes.is_empty()) || !netns_changes.is_empty();
    // systemd still runs an old configuration: the files are right but not loaded.
    let reload_pending = plans.iter().zip(&states).any(|(p, st)| {
        st.as_ref().is_some_and(|st| {
            st.mount_flags.and_then(MountFlags::from_bus) != Some(p.after.mount_flags)
        })
    });
    // Restart a running unit when its files change, or when it still runs with MountFlags set
    // (files fixed earlier without a restart). Never for an override that does not unset it.
    let restart_units: Vec<String> = plans
        .iter()
        .zip(&states)
        .filter(|(p, st)| {
            let Some(st) = st else { return false };
            let stale = p.after.namespacing.is_empty()
                && !verify::same_mount_ns_as_pid1(Path::new("/proc"), &p.unit, st.main_pid).ok;
            is_running(st)
                && unsets(p)
                && (!p.changes.is_empty()
                    || st.mount_flags.and_then(MountFlags::from_bus) != Some(MountFlags::Unset)
                    || stale)
        })
        .map(|(p, _)| p.unit.clone())
        .collect();
    for p in plans
        .iter_mut()
        .filter(|p| !unsets(p) && !p.changes.is_empty())
    {
        p.notes.push(format!(
            "{} will not be restarted: this override does not unset MountFlags on this systemd",
            p.unit
        ));
    }
    let live_mode = mgr.is_some();
    let mut actions = Vec::new();
    // Offline, a preview still lists what a live run would do; an offline write clears it.
    if live_mode || files_change {
        if files_change || reload_pending {
            actions.push("daemon-reload".to_string());
        }
        if live_mode {
            actions.extend(restart_units.iter().map(|u| format!("restart {u}")));
        } else {
            actions.extend(
                plans
                    .iter()
                    .filter(|p| !p.changes.is_empty() && unsets(p))
                    .map(|p| format!("restart {} if it is running", p.unit)),
            );
        }
    }
    let mut report = FixReport {
        command: "fix".into(),
        root: root_label(root),
        dry_run: preview,
        live: live_mode,
        changed: files_change || !actions.is_empty(),
        units: plans.iter().map(unit_report).collect(),
        files: netns_changes.iter().map(file_report).collect(),
        notes: global_notes,
        actions,
        pending: Vec::new(),
        reloaded: false,
        restarted: false,
        rolled_back: false,
    };
    for (u, st) in report.units.iter_mut().zip(&states) {
        u.active_state = st.as_ref().map(|s| s.active_state.clone());
    }

    if preview {
        ctx.out_fix(&report)?;
        return Ok(if args.check && report.changed {
            EXIT_PENDING
        } else {
            0
        });
    }

    let Some(mut m) = mgr else {
        // Offline: files only.
        apply_all(root, &plans, &netns_changes)?;
        report.actions.clear();
        ctx.out_fix(&report)?;
        return Ok(0);
    };

    if !report.changed {
        for (u, p) in report.units.iter_mut().zip(&plans) {
            let st = m.unit(&p.unit)?;
            u.verify = Some(verify_unit(p, &st));
        }
        report.actions.clear();
        ctx.out_fix(&report)?;
        return Ok(0);
    }

    let restart_ok = if restart_units.is_empty() || args.live.no_restart || args.live.yes {
        true
    } else if std::io::stdin().is_terminal() {
        if !ask(&restart_question(&restart_units))? {
            bail!("not confirmed: nothing written (use --no-restart to write and reload without restarting)");
        }
        true
    } else {
        false
    };

    let applied = if files_change {
        Some(apply_all(root, &plans, &netns_changes)?)
    } else {
        None
    };
    let w = Writer::new(root);
    let rollback = |m: &mut Systemd,
                    report: &mut FixReport,
                    restarted: &[String],
                    why: String|
     -> Result<i32> {
        let mut msg = why;
        if let Some(a) = &applied {
            let (what, ok) = restore(m, a, &w, restarted, args.live.timeout);
            msg.push_str(&what);
            report.rolled_back = ok;
        }
        report.changed = applied.is_some();
        ctx.out_fix(report)?;
        Err(anyhow!(msg))
    };

    if let Err(e) = m.reload() {
        return rollback(
            &mut m,
            &mut report,
            &[],
            format!("daemon-reload failed: {e:#}"),
        );
    }
    report.reloaded = true;
    // systemd must now report what the files say, with dropfix's files loaded.
    for p in &plans {
        let st = match m.unit(&p.unit) {
            Ok(st) => st,
            Err(e) => return rollback(&mut m, &mut report, &[], format!("{e:#}")),
        };
        let expect = p.after.mount_flags;
        let got = st.mount_flags.and_then(MountFlags::from_bus);
        let not_loaded: Vec<&str> = p
            .changes
            .iter()
            .filter(|c| c.action != plan::Action::Remove)
            .filter(|c| {
                !same_file(root, &st.fragment_path, &c.path)
                    && !st.drop_in_paths.iter().any(|d| same_file(root, d, &c.path))
            })
            .map(|c| c.path.as_str())
            .collect();
        if got != Some(expect) || !not_loaded.is_empty() {
            let why = format!(
                "{}: after daemon-reload systemd reports MountFlags={} (expected {}){}",
                p.unit,
                got.map_or("?", |g| g.describe()),
                expect.describe(),
                if not_loaded.is_empty() {
                    String::new()
                } else {
                    format!(", and it did not load {}", not_loaded.join(", "))
                }
            );
            return rollback(&mut m, &mut report, &[], why);
        }
    }

    if !restart_units.is_empty() && args.live.no_restart {
        report.pending.push(format!(
            "restart {} to run it without MountFlags (this stops docker's containers unless live-restore is configured)",
            restart_units.join(" ")
        ));
        report.actions = vec!["daemon-reload".into()];
        ctx.out_fix(&report)?;
        return Ok(0);
    }
    if !restart_ok {
        report
            .pending
            .push(format!("restart {}", restart_units.join(" ")));
        report.actions = vec!["daemon-reload".into()];
        ctx.out_fix(&report)?;
        bail!(
            "override written and systemd reloaded, but {} was not restarted: restarting docker stops its containers, so dropfix asks first; there is no terminal to ask on, so run `dropfix fix --yes` (or --no-restart to leave the restart for later)",
            restart_units.join(" and ")
        );
    }

    let mut restarted: Vec<String> = Vec::new();
    for u in &restart_units {
        restarted.push(u.clone());
        let outcome = match m.restart(u, Duration::from_secs(args.live.timeout)) {
            Ok(o) => o,
            Err(e) => {
                return rollback(
                    &mut m,
                    &mut report,
                    &restarted,
                    format!("restarting {u} failed: {e:#}"),
                )
            }
        };
        let st = match m.unit(u) {
            Ok(st) => st,
            Err(e) => return rollback(&mut m, &mut report, &restarted, format!("{e:#}")),
        };
        if let Some(r) = report.units.iter_mut().find(|r| r.unit == *u) {
            r.restarted = true;
            r.job_result = Some(outcome_str(&outcome));
            r.active_state = Some(st.active_state.clone());
        }
        report.restarted = true;
        if outcome != JobOutcome::Done || st.active_state != "active" {
            let why = format!(
                "{u} did not come back after the restart (job {}, ActiveState={}, Result={})",
                outcome_str(&outcome),
                st.active_state,
                st.result
            );
            return rollback(&mut m, &mut report, &restarted, why);
        }
    }

    // Verify, with evidence. A failure that a warned-about sandboxing setting explains, or an
    // override that cannot unset MountFlags here (forced strategy), is reported, not undone.
    for p in &plans {
        let st = match m.unit(&p.unit) {
            Ok(st) => st,
            Err(e) => return rollback(&mut m, &mut report, &restarted, format!("{e:#}")),
        };
        let v = verify_unit(p, &st);
        let explained = !p.after.namespacing.is_empty() || !unsets(p);
        if let Some(r) = report.units.iter_mut().find(|r| r.unit == p.unit) {
            r.verify = Some(v.clone());
            r.active_state = Some(st.active_state.clone());
        }
        if !v.ok && !explained {
            let failed: Vec<String> = v
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{} ({})", c.check, c.evidence))
                .collect();
            return rollback(
                &mut m,
                &mut report,
                &restarted,
                format!("verification failed: {}", failed.join("; ")),
            );
        }
    }
    let not_running: Vec<String> = plans
        .iter()
        .zip(&states)
        .filter(|(p, st)| st.as_ref().is_some_and(|st| !is_running(st)) && !p.changes.is_empty())
        .map(|(p, _)| {
            format!(
                "{} is not running, so it was not started: it will start without MountFlags",
                p.unit
            )
        })
        .collect();
    report.notes.extend(not_running);
    report.actions = std::iter::once("daemon-reload".to_string())
        .chain(restarted.iter().map(|u| format!("restart {u}")))
        .collect();
    ctx.out_fix(&report)?;
    Ok(0)
}

/// Does the plan leave MountFlags unset? (A forced strategy may not, on some versions.)
fn unsets(p: &UnitPlan) -> bool {
    p.after.mount_flags == MountFlags::Unset
}

/// Put the previous files back, reload, and restart the units already restarted with the new
/// ones; returns what happened, to be appended to the reason for rolling back.
fn restore(
    m: &mut Systemd,
    applied: &Applied,
    w: &Writer,
    restarted: &[String],
    timeout: u64,
) -> (String, bool) {
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
        let back = m.restart(u, Duration::from_secs(timeout));
        let active = m.unit(u).map(|s| s.active_state).unwrap_or_default();
        match back {
            Ok(JobOutcome::Done) if active == "active" => {
                msg.push_str(&format!(", restarted {u} with them: it is active again"))
            }
            Ok(o) => {
                ok = false;
                msg.push_str(&format!(
                    ", restarting {u} with them gave {} (ActiveState={active})",
                    outcome_str(&o)
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

fn outcome_str(o: &JobOutcome) -> String {
    match o {
        JobOutcome::Done => "done".into(),
        JobOutcome::Failed { result } => result.clone(),
        JobOutcome::TimedOut => "timeout (dropfix stopped waiting)".into(),
        JobOutcome::Vanished => "lost (the bus connection dropped)".into(),
    }
}

/// Checks after the fix: systemd's value, the process's namespace, docker's netns files.
fn verify_unit(p: &UnitPlan, st: &UnitState) -> VerifyReport {
    let proc_root = Path::new("/proc");
    let mut checks = Vec::new();
    let flags = st.mount_flags.and_then(MountFlags::from_bus);
    checks.push(Check {
        check: format!("{}: systemd reports MountFlags unset", p.unit),
        ok: flags == Some(MountFlags::Unset),
        evidence: format!(
            "Service.MountFlags={} = {}",
            st.mount_flags.map_or("?".into(), |v| v.to_string()),
            flags.map_or("unknown", |f| f.describe())
        ),
    });
    if is_running(st) {
        let mut c = verify::same_mount_ns_as_pid1(proc_root, &p.unit, st.main_pid);
        if !c.ok && !p.after.namespacing.is_empty() {
            let keys: Vec<&str> = p.after.namespacing.iter().map(|n| n.key.as_str()).collect();
            c.evidence
                .push_str(&format!("; kept apart by {}", keys.join(", ")));
        }
        checks.push(c);
        for dir in verify::NETNS_DIRS.iter().take(1) {
            checks.extend(verify::netns_entries(proc_root, dir));
        }
    }
    // A stale netns file (a sandbox of a container the restart stopped) is evidence, not a
    // failure of the fix: `ok` and the rollback decision rest on the other checks.
    VerifyReport {
        ok: checks
            .iter()
            .filter(|c| !c.check.contains("/netns/"))
            .all(|c| c.ok),
        checks,
    }
}

/// Write every plan's changes in one all-or-nothing step.
fn apply_all(root: &Root, plans: &[UnitPlan], extra: &[FileChange]) -> Result<Applied> {
    let w = Writer::new(root);
    let changes: Vec<(&str, &FileChange)> = plans
        .iter()
        .flat_map(|p| p.changes.iter().map(move |c| (p.unit.as_str(), c)))
        .chain(extra.iter().map(|c| ("docker.service", c)))
        .collect();
    state::apply_changes(&w, &changes).context("writing the override")
}

fn revert(ctx: &Ctx, args: &RevertArgs) -> Result<i32> {
    let root = &ctx.root;
    let units: Vec<String> = parse_units(&args.units)?
        .iter()
        .map(|u| u.to_string())
        .collect();
    let w = Writer::new(root);
    if !args.dry_run && !ctx.offline {
        require_root("dropfix revert")?;
    }
    let _lock = if args.dry_run {
        None
    } else {
        Some(Lock::acquire(root)?)
    };
    let mut notes = Vec::new();
    let mut mgr = connect(ctx, args.dry_run, &mut notes)?;
    // What revert will do, before doing it: consent to restart is asked first, as for fix.
    let planned = state::revert(&w, &units, true)?;
    // Only unit files and drop-ins call for a restart (not /run/netns or tmpfiles.d).
    let mut touched: Vec<String> = planned
        .iter()
        .filter(|r| r.action != "skip" && r.path.starts_with("/etc/systemd/"))
        .map(|r| r.unit.clone())
        .collect();
    touched.sort();
    touched.dedup();
    let mut running = Vec::new();
    if let Some(m) = mgr.as_mut() {
        for u in &touched {
            if is_running(&m.unit(u)?) {
                running.push(u.clone());
            }
        }
    }
    let consent = if args.dry_run || running.is_empty() || args.live.no_restart {
        false
    } else if args.live.yes {
        true
    } else if std::io::stdin().is_terminal() {
        if !ask(&restart_question(&running))? {
            bail!("not confirmed: nothing restored (use --no-restart to restore and reload without restarting)");
        }
        true
    } else {
        false
    };
    let done = if args.dry_run {
        planned
    } else {
        state::revert(&w, &units, false)?
    };
    let files: Vec<FileReport> = done
        .iter()
        .filter(|r| r.action != "skip")
        .map(|r| FileReport {
            path: r.path.clone(),
            action: r.action.clone(),
            diff: render::diff(&r.path, &r.before, &r.after),
        })
        .collect();
    let skipped: Vec<String> = done
        .iter()
        .filter(|r| r.action == "skip")
        .map(|r| format!("{}: {}", r.path, r.reason.as_deref().unwrap_or("")))
        .collect();
    let mut report = RevertReport {
        command: "revert".into(),
        root: root_label(root),
        dry_run: args.dry_run,
        changed: !files.is_empty(),
        files,
        skipped,
        notes,
        pending: Vec::new(),
        reloaded: false,
        restarted: Vec::new(),
    };
    let Some(m) = mgr.as_mut() else {
        ctx.out_revert(&report)?;
        return Ok(0);
    };
    if args.dry_run || !report.changed {
        ctx.out_revert(&report)?;
        return Ok(0);
    }
    m.reload()
        .context("files restored, but daemon-reload failed")?;
    report.reloaded = true;
    if !running.is_empty() && !consent {
        report
            .pending
            .push(format!("restart {}", running.join(" ")));
        ctx.out_revert(&report)?;
        if args.live.no_restart {
            return Ok(0);
        }
        bail!(
            "files restored and systemd reloaded, but {} was not restarted: restarting docker stops its containers, so dropfix asks first; there is no terminal to ask on, so run `dropfix revert --yes` (or restart it yourself)",
            running.join(" and ")
        );
    }
    for u in &running {
        let o = m.restart(u, Duration::from_secs(args.live.timeout))?;
        let st = m.unit(u)?;
        if o != JobOutcome::Done || st.active_state != "active" {
            ctx.out_revert(&report)?;
            bail!(
                "{u}: restart after revert gave {} (ActiveState={})",
                outcome_str(&o),
                st.active_state
            );
        }
        report.restarted.push(u.clone());
    }
    ctx.out_revert(&report)?;
    Ok(0)
}

/// Microseconds since the epoch of a path's modification time, if it exists.
fn mtime_us(root: &Root, path: &str) -> Option<u64> {
    let m = std::fs::symlink_metadata(root.host_path(path)).ok()?;
    let t = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(t.as_micros()).ok()
}

/// What the files say about a unit, for the doctor.
fn file_facts(
    root: &Root,
    dirs: &[SearchDir],
    name: &UnitName,
    version: Option<&Version>,
) -> Result<Option<doctor::FileFacts>> {
    let d = match discover::discover(root, dirs, name, version.map(|v| v.major))? {
        Ok(d) => d,
        Err(Missing::NotFound) => return Ok(None),
        Err(Missing::Masked(p)) => bail!("masked by {p}"),
    };
    let section = crate::effective::exec_section(d.unit.unit_type()).unwrap_or("Service");
    let applied = discover::applied(&d.dropins);
    let sources = discover::parse_sources(&d.fragment.path, &d.fragment.data, &applied)?;
    let rule = version.map_or(crate::effective::EmptyAssignment::Resets, |v| {
        crate::effective::EmptyAssignment::for_version(v.major)
    });
    let effective = crate::effective::merge(&sources, section, rule);
    let mut newest = mtime_us(root, &d.fragment.path);
    for p in applied
        .iter()
        .map(|x| x.path.as_str())
        .chain(d.dropin_dirs.iter().map(|(p, _)| p.as_str()))
    {
        newest = newest.max(mtime_us(root, p));
    }
    Ok(Some(doctor::FileFacts {
        effective,
        newest_change_us: newest,
    }))
}

/// Facts about /proc: namespace files, who holds them, leaked mounts.
fn host_proc_facts(host: &mut doctor::HostFacts, targets: &[String]) {
    let proc = inspect::Proc::new();
    host.pid1_ns = verify::mount_ns(proc.path(), 1);
    if host.pid1_ns.is_none() {
        host.unchecked.push("PID 1's mount namespace is unreadable (run as root): namespace, netns and leaked-mount checks skipped".into());
        return;
    }
    let (procs, unreadable) = proc.processes();
    if unreadable > 0 {
        host.unchecked.push(format!(
            "{unreadable} process(es) could not be read (run as root to see them all)"
        ));
    }
    let by_ns = inspect::by_namespace(&procs);
    let pid1_ns = host.pid1_ns.clone().unwrap_or_default();
    // One mountinfo read per namespace.
    let mut ns_mounts: Vec<(&inspect::Process, Vec<inspect::Mount>)> = Vec::new();
    for (ns, members) in &by_ns {
        if *ns == pid1_ns {
            continue;
        }
        if let Some(first) = members.first() {
            if let Some(m) = proc.mounts(first.pid) {
                ns_mounts.push((first, m));
            }
        }
    }
    let pid1_points: Vec<String> = proc.mount_points(1).unwrap_or_default();
    host.ip_netns_linked = match (
        std::fs::canonicalize(proc.path().join("1/root/run/netns")),
        std::fs::canonicalize(proc.path().join("1/root/run/docker/netns")),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let mut seen = Vec::new();
    for dir in verify::NETNS_DIRS {
        let real = proc.path().join("1/root").join(dir.trim_start_matches('/'));
        let Ok(canon) = std::fs::canonicalize(&real) else {
            continue;
        };
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon.clone());
        let Ok(rd) = std::fs::read_dir(&canon) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            let shown = format!("{dir}/{n}");
            let nsfs = verify::is_nsfs(&canon.join(&n)).ok();
            let holders = if nsfs == Some(false) {
                ns_mounts
                    .iter()
                    .filter(|(_, mounts)| {
                        mounts.iter().any(|m| {
                            m.point == shown
                                || (dir == &"/run/docker/netns"
                                    && m.point == format!("/var{shown}"))
                        })
                    })
                    .map(|(p, _)| (*p).clone())
                    .collect()
            } else {
                Vec::new()
            };
            host.netns.push(doctor::NetnsEntry {
                path: shown,
                nsfs,
                holders,
            });
        }
    }
    const DOCKER_DIRS: &[&str] = &["/var/lib/docker", "/run/docker", "/var/run/docker"];
    for (ns, members) in &by_ns {
        if *ns == pid1_ns {
            continue;
        }
        // The target units' own namespace (the MountFlags problem) and containers are not leaks.
        let Some(rep) = members.iter().find(|p| {
            p.unit.as_deref().is_none_or(|u| {
                !(targets.iter().any(|t| t == u)
                    || u.starts_with("docker-") && u.ends_with(".scope"))
            })
        }) else {
            continue;
        };
        if members.iter().any(|p| {
            p.unit
                .as_deref()
                .is_some_and(|u| targets.iter().any(|t| t == u))
        }) {
            continue;
        }
        let Some((_, mounts)) = ns_mounts.iter().find(|(p, _)| p.mnt_ns == **ns) else {
            continue;
        };
        let held: Vec<&inspect::Mount> = mounts
            .iter()
            .filter(|m| DOCKER_DIRS.iter().any(|d| inspect::under(&m.point, d)))
            .collect();
        let stale = held
            .iter()
            .filter(|m| !m.slave || !pid1_points.contains(&m.point))
            .count();
        if !held.is_empty() {
            host.leaks.push(doctor::Leak {
                process: (*rep).clone(),
                mounts: held.len(),
                stale,
            });
        }
    }
}

fn doctor(ctx: &Ctx, args: &crate::cli::DoctorArgs) -> Result<i32> {
    let root = &ctx.root;
    let explicit = !args.units.is_empty();
    let names = if explicit {
        parse_units(&args.units)?
    } else {
        parse_units(
            &DEFAULT_UNITS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )?
    };
    let dirs = discover::search_path(root)?;
    let mut mgr = if ctx.offline {
        None
    } else {
        Some(Systemd::connect().context("could not check")?)
    };
    let version = version_for(root, None, mgr.as_mut())?;
    let mut host = doctor::HostFacts {
        version: version.clone(),
        ..doctor::HostFacts::default()
    };
    let mut facts = Vec::new();
    for name in &names {
        let bus = match mgr.as_mut() {
            Some(m) => Some(
                m.unit(name.as_str())
                    .with_context(|| format!("asking systemd about {name}"))?,
            ),
            None => None,
        };
        let files = file_facts(root, &dirs, name, version.as_ref());
        let not_there = bus.as_ref().is_some_and(|b| b.load_state == "not-found")
            || (bus.is_none() && matches!(files, Ok(None)));
        if not_there {
            if explicit || name.as_str() == "docker.service" {
                bail!("could not check {name}: unit not found");
            }
            continue;
        }
        let main_ns = bus
            .as_ref()
            .filter(|b| b.main_pid != 0)
            .and_then(|b| verify::mount_ns(Path::new("/proc"), b.main_pid));
        let (files, files_error) = match files {
            Ok(Some(f)) => (Some(f), None),
            Ok(None) => (None, Some("no unit file found".to_string())),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        facts.push(doctor::UnitFacts {
            unit: name.to_string(),
            files,
            files_error,
            bus,
            main_ns,
        });
    }
    if let Some(m) = mgr.as_mut() {
        // UnitsLoadTimestamp (newer systemd) moves with every daemon-reload; the boot-time
        // UnitsLoadFinishTimestamp alone would make every later edit look unloaded, so without
        // the former the file times are not compared (NeedDaemonReload and values still are).
        host.loaded_at_us = m
            .manager_u64("UnitsLoadTimestamp")
            .map(|t| t.max(m.manager_u64("UnitsLoadFinishTimestamp").unwrap_or(0)));
        let targets: Vec<String> = facts.iter().map(|f| f.unit.clone()).collect();
        host_proc_facts(&mut host, &targets);
    } else {
        host.unchecked
            .push("offline (--root): process, namespace and netns checks need a live host".into());
    }
    let d = doctor::diagnose(&facts, &host);
    match ctx.format {
        Format::Json => print_json(&d)?,
        Format::Text => print(&render::doctor_text(&d, ctx.style))?,
    }
    Ok(if d.healthy { 0 } else { EXIT_PENDING })
}

/// The result of `scan`.
#[derive(Debug, serde::Serialize)]
struct ScanReport {
    command: String,
    live: bool,
    scanned: usize,
    units: Vec<scan::Row>,
}

fn scan(ctx: &Ctx, args: &crate::cli::ScanArgs) -> Result<i32> {
    let root = &ctx.root;
    let (rows, scanned, live) = if ctx.offline {
        let version = version_for(root, args.systemd_version, None)?;
        let dirs = discover::search_path(root)?;
        let ix = discover::Index::new(root, &dirs);
        let mut rows = Vec::new();
        let mut scanned = 0;
        let rule = version
            .as_ref()
            .map_or(crate::effective::EmptyAssignment::Resets, |v| {
                crate::effective::EmptyAssignment::for_version(v.major)
            });
        for n in ix.unit_names()? {
            let Ok(name) = UnitName::parse(&n) else {
                continue;
            };
            if name.unit_type() != "service" {
                continue;
            }
            let Ok(d) = discover::discover_in(&ix, &name, version.as_ref().map(|v| v.major))?
            else {
                continue;
            };
            if d.unit != name {
                continue; // an alias: its unit is listed under its own name
            }
            scanned += 1;
            let applied = discover::applied(&d.dropins);
            let sources = discover::parse_sources(&d.fragment.path, &d.fragment.data, &applied)
                .with_context(|| format!("reading {n}"))?;
            let eff = crate::effective::merge(&sources, "Service", rule);
            if let Some(r) = scan::from_effective(&n, &eff, version.as_ref().map(|v| v.major)) {
                rows.push(r);
            }
        }
        (rows, scanned, false)
    } else {
        let mut m = Systemd::connect()?;
        let version = version_for(root, args.systemd_version, Some(&mut m))?;
        let units: Vec<_> = m
            .list_units()?
            .into_iter()
            .filter(|u| u.name.ends_with(".service") && u.load_state == "loaded")
            .collect();
        let paths: Vec<String> = units.iter().map(|u| u.path.clone()).collect();
        let props = m.properties_many(&paths, "org.freedesktop.systemd1.Service")?;
        let mut rows = Vec::new();
        for (u, p) in units.iter().zip(&props) {
            if let Some(p) = p {
                if let Some(r) = scan::from_properties(
                    &u.name,
                    &u.active_state,
                    p,
                    version.as_ref().map(|v| v.major),
                ) {
                    rows.push(r);
                }
            }
        }
        (rows, units.len(), true)
    };
    let report = ScanReport {
        command: "scan".into(),
        live,
        scanned,
        units: rows,
    };
    match ctx.format {
        Format::Json => print_json(&report)?,
        Format::Text => {
            let mut t = scan::table(&report.units);
            t.push_str(&format!(
                "{} of {} service(s) run in a mount namespace of their own\n",
                report.units.len(),
                report.scanned
            ));
            print(&t)?
        }
    }
    Ok(0)
}

fn one_unit(arg: &str) -> Result<UnitName> {
    UnitName::from_user(arg).map_err(anyhow::Error::msg)
}

/// Discover a unit that must exist and not be masked.
fn discover_one(
    root: &Root,
    name: &UnitName,
    version: Option<&Version>,
) -> Result<discover::Discovered> {
    let dirs = discover::search_path(root)?;
    match discover::discover(root, &dirs, name, version.map(|v| v.major))
        .with_context(|| format!("reading {name}"))?
    {
        Ok(d) => Ok(d),
        Err(Missing::NotFound) => bail!("{name}: unit not found in {}", root_label(root)),
        Err(Missing::Masked(p)) => {
            bail!("{name}: unit is masked ({p} is empty or links to /dev/null)")
        }
    }
}

fn show(ctx: &Ctx, args: &crate::cli::ShowArgs) -> Result<i32> {
    let root = &ctx.root;
    let name = one_unit(&args.unit)?;
    // Bad key names are bad input, before anything else.
    let ty = name.unit_type().to_string();
    let mut wanted: Vec<(Option<String>, String)> = Vec::new();
    for k in &args.keys {
        let (sec, key) = match k.split_once('.') {
            Some((s, k)) => (Some(s.to_string()), k.to_string()),
            None => (None, k.clone()),
        };
        let known = match &sec {
            Some(s) => crate::directives::known(&ty, s, &key),
            None => crate::directives::sections(&ty)
                .iter()
                .any(|s| crate::directives::known(&ty, s, &key)),
        };
        if !known {
            bail!("{k}: systemd knows no such setting for a .{ty} unit");
        }
        wanted.push((sec, key));
    }
    let mut mgr = if ctx.offline {
        None
    } else {
        Some(Systemd::connect()?)
    };
    let version = version_for(root, None, mgr.as_mut())?;
    let d = discover_one(root, &name, version.as_ref())?;
    let applied = discover::applied(&d.dropins);
    let sources = discover::parse_sources(&d.fragment.path, &d.fragment.data, &applied)?;
    let mut all = settings::merge_all(&sources);
    if !wanted.is_empty() {
        all.retain(|s| {
            wanted
                .iter()
                .any(|(sec, k)| *k == s.key && sec.as_ref().is_none_or(|x| *x == s.section))
        });
    }
    let mut need_reload = false;
    let live = !ctx.offline;
    if let Some(m) = mgr.as_mut() {
        let st = m.unit(d.unit.as_str())?;
        need_reload = st.need_daemon_reload;
        let props = m.unit_properties(d.unit.as_str())?;
        for s in all.iter_mut() {
            s.systemd = settings::compare(s, &props);
        }
        // Keys asked for that no file sets: systemd's default, when it exposes one.
        for (sec, key) in &wanted {
            if all.iter().any(|s| s.key == *key) {
                continue;
            }
            let mut s = settings::Setting {
                section: sec.clone().unwrap_or_default(),
                key: key.clone(),
                value: String::new(),
                values: Vec::new(),
                source: settings::Contribution {
                    value: String::new(),
                    path: "(not set in any file)".into(),
                    line: 0,
                },
                overridden: Vec::new(),
                systemd: None,
            };
            s.systemd = settings::compare(&s, &props).map(|mut r| {
                r.agrees = None;
                r
            });
            all.push(s);
        }
    }
    let report = render::ShowReport {
        command: "show".into(),
        unit: d.unit.to_string(),
        fragment: d.fragment.path.clone(),
        live,
        need_daemon_reload: need_reload,
        settings: all,
        dropins: settings::dropin_statuses(&d),
    };
    match ctx.format {
        Format::Json => print_json(&report)?,
        Format::Text => print(&render::show_text(&report, ctx.style))?,
    }
    Ok(0)
}

/// `set` and `unset`: dropfix's settings drop-in, previewed, written, reloaded, verified, and
/// with --restart restarted (with consent) and rolled back on failure.
fn edit_settings(
    ctx: &Ctx,
    command: &str,
    name: &UnitName,
    ops: &[Op],
    dry_run: bool,
    check: bool,
    restart: &crate::cli::RestartArgs,
) -> Result<i32> {
    let root = &ctx.root;
    let preview = dry_run || check;
    if !preview && !ctx.offline {
        require_root(&format!("dropfix {command}"))?;
    }
    // Held from the first read to the last write: two sets at once never lose one's change.
    let _lock = if preview {
        None
    } else {
        Some(Lock::acquire(root)?)
    };
    let mut mgr = if ctx.offline {
        None
    } else {
        Some(Systemd::connect()?)
    };
    let version = version_for(root, None, mgr.as_mut())?;
    if let Some(v) = version.as_ref().filter(|v| {
        crate::effective::EmptyAssignment::for_version(v.major)
            == crate::effective::EmptyAssignment::Ignored
    }) {
        let empty_mf = ops.iter().any(
            |o| matches!(o, Op::Set { key, value, .. } if key == "MountFlags" && value.is_empty()),
        );
        if empty_mf {
            bail!("Service.MountFlags=: systemd {} ignores an empty MountFlags= (229 to 232 do); use dropfix fix, which copies the unit instead", v.major);
        }
    }
    let d = discover_one(root, name, version.as_ref())?;
    let unit = d.unit.to_string();
    let dir = plan::own_dropin_dir(&unit);
    // dropfix's settings drop-in: the one it wrote earlier, or a new late-sorting name.
    let existing = d.dropins.iter().find(|x| {
        crate::root::parent(&x.path) == dir
            && x.basename().ends_with(settings::SETTINGS_DROPIN)
            && plan::is_generated(&x.data)
    });
    let path = match existing {
        Some(x) => x.path.clone(),
        None => {
            let others: Vec<&str> = d.dropins.iter().map(|x| x.basename()).collect();
            crate::root::join(&dir, &plan::late_name(settings::SETTINGS_DROPIN, &others))
        }
    };
    let header = plan::settings_header(&unit);
    let old = existing.map(|x| x.data.clone());
    let new = settings::edit_own(old.as_deref(), &header, ops);
    let change = match (&old, &new) {
        (Some(o), Some(n)) if o == n.as_bytes() => None,
        (None, None) => None,
        (Some(o), None) => Some(plan::FileChange {
            path: path.clone(),
            action: plan::Action::Remove,
            old: o.clone(),
            new: Vec::new(),
            purpose: "no settings left".into(),
            link: None,
        }),
        (o, Some(n)) => Some(plan::FileChange {
            path: path.clone(),
            action: if o.is_some() {
                plan::Action::Replace
            } else {
                plan::Action::Create
            },
            old: o.clone().unwrap_or_default(),
            new: n.clone().into_bytes(),
            purpose: format!("dropfix {command}"),
            link: None,
        }),
    };
    let changes: Vec<plan::FileChange> = change.into_iter().collect();
    let applied_now = discover::applied(&d.dropins);
    let before = settings::merge_all(&discover::parse_sources(
        &d.fragment.path,
        &d.fragment.data,
        &applied_now,
    )?);
    let after = settings::merge_all(&plan::sources_after(&d, &changes)?);
    let value_of = |all: &[settings::Setting], sec: &str, key: &str| {
        all.iter()
            .find(|s| s.section == sec && s.key == key)
            .map(|s| s.value.clone())
            .unwrap_or_default()
    };
    let mut report_settings = Vec::new();
    for op in ops {
        let (sec, key) = match op {
            Op::Set { section, key, .. } | Op::Unset { section, key } => (section, key),
        };
        let a = value_of(&after, sec, key);
        if let Op::Set { value, .. } = op {
            // A later drop-in that sets the key again would make the change silently useless.
            let last = after.iter().find(|s| s.section == *sec && s.key == *key);
            if let Some(l) = last {
                if l.source.path != path && !value.is_empty() {
                    bail!("{sec}.{key}: {}:{} sets it after dropfix's drop-in, so the change would not take effect", l.source.path, l.source.line);
                }
            }
        }
        report_settings.push(render::SettingChange {
            key: format!("{sec}.{key}"),
            before: value_of(&before, sec, key),
            after: a,
        });
    }
    let mut report = render::SetReport {
        command: command.into(),
        unit: unit.clone(),
        dry_run: preview,
        changed: !changes.is_empty(),
        files: changes.iter().map(file_report).collect(),
        settings: report_settings,
        reloaded: false,
        restarted: false,
        job_result: None,
        verify: Vec::new(),
        rolled_back: false,
        pending: Vec::new(),
    };
    let out = |r: &render::SetReport| match ctx.format {
        Format::Json => print_json(r),
        Format::Text => print(&render::set_text(r, ctx.style)),
    };
    if preview || changes.is_empty() {
        out(&report)?;
        return Ok(if check && report.changed {
            EXIT_PENDING
        } else {
            0
        });
    }
    let Some(mut m) = mgr else {
        let w = Writer::new(root);
        let tagged: Vec<(&str, &FileChange)> = changes.iter().map(|c| (unit.as_str(), c)).collect();
        state::apply_changes(&w, &tagged).context("writing the drop-in")?;
        out(&report)?;
        return Ok(0);
    };
    let st = m.unit(&unit)?;
    let running = is_running(&st);
    let go = if !restart.restart || !running {
        false
    } else if restart.yes {
        true
    } else if std::io::stdin().is_terminal() {
        if !ask(&format!("Restart {unit} now so the change takes effect?"))? {
            bail!("not confirmed: nothing written (leave out --restart to write and reload only)");
        }
        true
    } else {
        bail!("--restart needs consent: there is no terminal to ask on, so add --yes");
    };
    let w = Writer::new(root);
    let tagged: Vec<(&str, &FileChange)> = changes.iter().map(|c| (unit.as_str(), c)).collect();
    let applied = state::apply_changes(&w, &tagged).context("writing the drop-in")?;
    let fail = |m: &mut Systemd,
                report: &mut render::SetReport,
                restarted: bool,
                why: String|
     -> Result<i32> {
        let mut msg = why;
        let units = if restarted {
            vec![unit.clone()]
        } else {
            Vec::new()
        };
        let (what, ok) = restore(m, &applied, &w, &units, restart.timeout);
        msg.push_str(&what);
        report.rolled_back = ok;
        out(report)?;
        Err(anyhow!(msg))
    };
    if let Err(e) = m.reload() {
        return fail(
            &mut m,
            &mut report,
            false,
            format!("daemon-reload failed: {e:#}"),
        );
    }
    report.reloaded = true;
    let verify_now = |m: &mut Systemd| -> Result<Vec<settings::Reported>> {
        let props = m.unit_properties(&unit)?;
        Ok(after
            .iter()
            .filter(|s| {
                report
                    .settings
                    .iter()
                    .any(|c| c.key == format!("{}.{}", s.section, s.key))
            })
            .filter_map(|s| settings::compare(s, &props))
            .collect())
    };
    report.verify = match verify_now(&mut m) {
        Ok(v) => v,
        Err(e) => return fail(&mut m, &mut report, false, format!("{e:#}")),
    };
    if let Some(bad) = report.verify.iter().find(|v| v.agrees == Some(false)) {
        let why = format!(
            "after daemon-reload systemd reports {}={}, not what the files now say",
            bad.property, bad.value
        );
        return fail(&mut m, &mut report, false, why);
    }
    if go {
        let outcome = match m.restart(&unit, Duration::from_secs(restart.timeout)) {
            Ok(o) => o,
            Err(e) => {
                return fail(
                    &mut m,
                    &mut report,
                    true,
                    format!("restarting {unit} failed: {e:#}"),
                )
            }
        };
        let st = match m.unit(&unit) {
            Ok(st) => st,
            Err(e) => return fail(&mut m, &mut report, true, format!("{e:#}")),
        };
        report.restarted = true;
        report.job_result = Some(outcome_str(&outcome));
        if outcome != JobOutcome::Done || st.active_state != "active" {
            let why = format!(
                "{unit} did not come back after the restart (job {}, ActiveState={}, Result={})",
                outcome_str(&outcome),
                st.active_state,
                st.result
            );
            return fail(&mut m, &mut report, true, why);
        }
        report.verify = match verify_now(&mut m) {
            Ok(v) => v,
            Err(e) => return fail(&mut m, &mut report, true, format!("{e:#}")),
        };
    } else if running {
        report.pending.push(format!(
            "restart {unit} for the change to take effect (dropfix {command} --restart)"
        ));
    }
    out(&report)?;
    Ok(0)
}
