//! The pipeline, one line a stage: discover -> effective -> plan -> render -> apply ->
//! manager (reload, restart) -> verify. The only place that sequences side effects: one file
//! per command, and the steps they share here.

mod doctor;
mod execute;
pub use execute::Impact;
#[cfg(test)]
mod fake;
mod fix;
mod revert;
mod scan;
mod settings;

use crate::apply::Writer;
use crate::cli::{Cli, Color, Command, FixArgs, Format, RevertArgs, StrategyArg};
use crate::discover::{self, Missing, SearchDir};
use crate::effective::MountFlags;
use crate::error::ErrorReport;
use crate::lock::Lock;
use crate::manager::{JobOutcome, ServiceManager, Systemd, UnitState};
use crate::plan::{self, FileChange, Strategy, UnitPlan};
use crate::render::{self, FileReport, FixReport, RevertReport, Style, UnitReport, VerifyReport};
use crate::root::Root;
use crate::settings::Op;
use crate::state;
use crate::unitname::UnitName;
use crate::verify::{self, Check};
use crate::version::{self, Version};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

/// The service manager behind the seam: systemd over D-Bus, or a recording fake in tests.
type Manager = dyn ServiceManager;

/// Exit status: a change is pending (`--check`), or doctor found a problem.
pub const EXIT_PENDING: i32 = 3;

/// Exit status: the fix is in force, but namespaces that live-restore containers still hold in
/// another mount namespace stay unreachable until those containers are restarted.
pub const EXIT_UNREACHABLE: i32 = 4;

/// Version of the JSON shape, the `schema` key of every object dropfix prints.
pub const SCHEMA: u32 = 2;

/// Where the Docker Engine API listens.
pub const DOCKER_SOCK: &str = "/run/docker.sock";

/// Default units: docker.service always, early-docker.service where it exists (CoreOS 647-1192).
const DEFAULT_UNITS: &[&str] = &["docker.service", "early-docker.service"];

/// Run a parsed command line; returns the exit status. Every outcome is printed: with
/// `--format json` an error is one JSON object on stdout (and one line on stderr).
pub fn run(cli: Cli) -> i32 {
    let format = cli.global.format;
    let command = command_name(&cli.command);
    if format == Format::Prometheus && !matches!(cli.command, Command::Doctor(_)) {
        // A usage error (exit 2): only doctor's report is a set of measurements.
        eprintln!(
            "dropfix: error: --format prometheus: only `dropfix doctor` writes metrics; use --format json with {command}"
        );
        return 2;
    }
    match run_inner(cli) {
        Ok(code) => code,
        Err(e) => {
            // A merge conflict is shown, markers and all, before the one error line.
            if let Some(c) = e
                .chain()
                .find_map(|c| c.downcast_ref::<crate::update::Conflict>())
            {
                eprint!("{}", c.text);
            }
            eprintln!("dropfix: error: {e:#}");
            if format == Format::Json {
                let _ = print_json(&ErrorOnly {
                    command: command.into(),
                    error: ErrorReport::from_error(&e),
                });
            }
            1
        }
    }
}

/// A run that ended before it had a report: the error alone.
#[derive(serde::Serialize)]
struct ErrorOnly {
    command: String,
    error: ErrorReport,
}

/// The subcommand's name, for JSON.
pub fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Fix(_) => "fix",
        Command::Revert(_) => "revert",
        Command::Doctor(_) => "doctor",
        Command::Scan(_) => "scan",
        Command::Show(_) => "show",
        Command::Set(_) => "set",
        Command::Unset(_) => "unset",
        Command::Generate(_) => "generate",
        Command::AnsibleModule(_) => "ansible-module",
    }
}

/// Print a usage error (from clap) as JSON when `--format json` was asked for.
pub fn usage_error_json(args: &[String], message: &str) -> bool {
    let json = args
        .windows(2)
        .any(|w| w[0] == "--format" && w[1] == "json")
        || args.iter().any(|a| a == "--format=json");
    if json {
        let command = args
            .iter()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .cloned()
            .unwrap_or_default();
        let first = message.lines().next().unwrap_or_default();
        let _ = print_json(&ErrorOnly {
            command,
            error: ErrorReport::message(first.trim_start_matches("error: ").trim()),
        });
    }
    json
}

fn run_inner(cli: Cli) -> Result<i32> {
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
        docker_sock: DOCKER_SOCK.into(),
        tty: std::io::stdin().is_terminal(),
        ask: Box::new(ask),
        connect: Box::new(|| Ok(Box::new(Systemd::connect()?) as Box<Manager>)),
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
        Command::Generate(g) => crate::cli::generate(&g.what).map(|()| 0),
    }
}

/// Asks a person a yes/no question (on the terminal, or a scripted answer in tests).
type Asker = Box<dyn Fn(&str) -> Result<bool>>;

/// Makes the service manager: systemd over the bus, or a fake in tests.
type Connector = Box<dyn Fn() -> Result<Box<Manager>>>;

struct Ctx {
    root: Root,
    offline: bool,
    format: Format,
    /// JSON file reports carry whole texts (`--with-contents`).
    with_contents: bool,
    style: Style,
    /// Where /proc is (tests point it at a fake one).
    proc_root: PathBuf,
    /// The Docker Engine API's socket.
    docker_sock: PathBuf,
    /// A person can be asked (stdin is a terminal).
    tty: bool,
    /// Ask a yes/no question on the terminal.
    ask: Asker,
    /// The one place every command gets its service manager from.
    connect: Connector,
}

impl Ctx {
    /// The service manager on a live host (None offline). A preview can go on from the files
    /// alone when systemd cannot be reached, with a note saying so.
    fn manager(&self, preview: bool, notes: &mut Vec<String>) -> Result<Option<Box<Manager>>> {
        if self.offline {
            return Ok(None);
        }
        match (self.connect)() {
            Ok(m) => Ok(Some(m)),
            Err(e) if preview => {
                notes.push(format!("{e:#}; planned from the files alone"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
    fn out_fix(&self, r: &FixReport) -> Result<()> {
        for u in &r.units {
            say_error(u.error.as_ref());
        }
        if !r
            .units
            .iter()
            .any(|u| u.error.is_some() && u.error == r.error)
        {
            say_error(r.error.as_ref());
        }
        // A text run that failed before doing anything says so in its one error line.
        if self.format == Format::Text && r.error.is_some() && !r.changed && !r.reloaded {
            return Ok(());
        }
        match self.format {
            Format::Json | Format::Prometheus => print_json(r),
            Format::Text => print(&render::fix_text(r, self.style)),
        }
    }
    fn out_revert(&self, r: &RevertReport) -> Result<()> {
        say_error(r.error.as_ref());
        if self.format == Format::Text && r.error.is_some() && !r.changed && !r.reloaded {
            return Ok(());
        }
        match self.format {
            Format::Json | Format::Prometheus => print_json(r),
            Format::Text => print(&render::revert_text(r, self.style)),
        }
    }
    fn out_set(&self, r: &render::SetReport) -> Result<()> {
        say_error(r.error.as_ref());
        if self.format == Format::Text && r.error.is_some() && !r.changed && !r.reloaded {
            return Ok(());
        }
        match self.format {
            Format::Json | Format::Prometheus => print_json(r),
            Format::Text => print(&render::set_text(r, self.style)),
        }
    }
}

/// A report that carries an error also says it on stderr, in one line.
fn say_error(e: Option<&ErrorReport>) {
    if let Some(e) = e {
        // A merge conflict is shown, markers and all, before the one error line.
        if let Some(c) = &e.conflict {
            eprint!("{c}");
        }
        eprintln!("dropfix: error: {}", e.message);
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

/// Every JSON object dropfix prints starts with the `schema` key.
#[derive(serde::Serialize)]
struct Envelope<'a, T: serde::Serialize> {
    schema: u32,
    #[serde(flatten)]
    body: &'a T,
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    print(&json_text(v)?)
}

/// The JSON text of a report, in its envelope, with a final newline.
fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(&Envelope {
        schema: SCHEMA,
        body: v,
    })
    .context("encoding JSON")?;
    s.push('\n');
    Ok(s)
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
        .context(crate::error::Reading(name.to_string()))?
    {
        Ok(d) => Ok(d),
        Err(Missing::NotFound) => Err(crate::error::unit(
            name.as_str(),
            format!("unit not found in {}", root_label(root)),
        )),
        Err(Missing::Masked(p)) => Err(crate::error::unit(
            name.as_str(),
            format!("unit is masked ({p} is empty or links to /dev/null)"),
        )),
    }
}
