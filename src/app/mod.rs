//! The pipeline, one line a stage: discover -> effective -> plan -> render -> apply ->
//! manager (reload, restart) -> verify. The only place that sequences side effects: one file
//! per command, and the steps they share here.

mod doctor;
mod fix;
mod revert;
mod scan;
mod settings;

use crate::apply::Writer;
use crate::cli::{Cli, Color, Command, FixArgs, Format, RevertArgs, StrategyArg};
use crate::discover::{self, Missing, SearchDir};
use crate::effective::MountFlags;
use crate::lock::Lock;
use crate::manager::{JobOutcome, ServiceManager, Systemd, UnitState};
use crate::plan::{self, FileChange, Strategy, UnitPlan};
use crate::render::{self, FileReport, FixReport, RevertReport, Style, UnitReport, VerifyReport};
use crate::root::Root;
use crate::settings::Op;
use crate::state::{self, Applied};
use crate::unitname::UnitName;
use crate::verify::{self, Check};
use crate::version::{self, Version};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

/// The service manager behind the seam: systemd over D-Bus, or a recording fake in tests.
type Manager = dyn ServiceManager;

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
        with_contents: cli.global.with_contents,
        style,
        proc_root: "/proc".into(),
    };
    match cli.command {
        Command::Fix(args) => fix::fix(&ctx, &args),
        Command::Revert(args) => revert::revert(&ctx, &args),
        Command::Doctor(args) => doctor::doctor(&ctx, &args),
        Command::Scan(args) => scan::scan(&ctx, &args),
        Command::Show(args) => settings::show(&ctx, &args),
        Command::Set(args) => {
            let unit = one_unit(&args.unit)?;
            let ops = args
                .assignments
                .iter()
                .map(|a| crate::settings::parse_op(unit.unit_type(), a, true, args.reset))
                .collect::<std::result::Result<Vec<_>, String>>()
                .map_err(anyhow::Error::msg)?;
            settings::edit_settings(
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
                .map(|a| crate::settings::parse_op(unit.unit_type(), a, false, false))
                .collect::<std::result::Result<Vec<_>, String>>()
                .map_err(anyhow::Error::msg)?;
            settings::edit_settings(
                &ctx,
                "unset",
                &unit,
                &ops,
                args.dry_run,
                args.check,
                &args.restart,
            )
        }
        Command::AnsibleModule(a) => Ok(crate::ansible::run(&a.args_file)),
        Command::Generate(g) => crate::cli::generate(&g.what)
            .context("writing generated text")
            .map(|()| 0),
    }
}

struct Ctx {
    root: Root,
    offline: bool,
    format: Format,
    /// JSON file reports carry whole texts (`--with-contents`).
    with_contents: bool,
    style: Style,
    /// Where /proc is (tests point it at a fake one).
    proc_root: std::path::PathBuf,
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

/// The units named, or the default ones (docker.service, early-docker.service).
fn units_or_default(given: &[String]) -> Result<Vec<UnitName>> {
    if given.is_empty() {
        parse_units(
            &DEFAULT_UNITS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
    } else {
        parse_units(given)
    }
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
fn connect(ctx: &Ctx, preview: bool, notes: &mut Vec<String>) -> Result<Option<Box<Manager>>> {
    if ctx.offline {
        return Ok(None);
    }
    match Systemd::connect() {
        Ok(m) => Ok(Some(Box::new(m))),
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
    mgr: Option<&mut Manager>,
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

fn file_report(c: &FileChange, with_contents: bool) -> FileReport {
    FileReport {
        path: c.path.clone(),
        action: c.action.as_str().into(),
        diff: render::diff(&c.path, &c.old, &c.new),
        before: with_contents.then(|| String::from_utf8_lossy(&c.old).into_owned()),
        after: with_contents.then(|| String::from_utf8_lossy(&c.new).into_owned()),
    }
}

/// Same file? Paths systemd reports may go through /lib -> /usr/lib and other links.
fn same_file(root: &Root, a: &str, b: &str) -> bool {
    a == b || matches!((root.resolve(a), root.resolve(b)), (Ok(x), Ok(y)) if x == y)
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

/// Put the previous files back, reload, and restart the units already restarted with the new
/// ones; returns what happened, to be appended to the reason for rolling back.
fn restore(
    m: &mut Manager,
    applied: &Applied,
    w: &Writer,
    restarted: &[String],
    timeout: u64,
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
