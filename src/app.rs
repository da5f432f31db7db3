//! The pipeline, one line a stage: discover -> effective -> plan -> render -> apply. The only
//! place that sequences side effects.

use crate::apply::Writer;
use crate::cli::{Cli, Color, Command, FixArgs, Format, RevertArgs, StrategyArg};
use crate::discover::{self, Missing, SearchDir};
use crate::plan::{self, Strategy, UnitPlan};
use crate::render::{self, FileReport, FixReport, RevertReport, Style, UnitReport};
use crate::root::Root;
use crate::state;
use crate::unitname::UnitName;
use crate::version::{self, Version};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};

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
    let offline = cli.global.root.is_some();
    match cli.command {
        Command::Fix(args) => fix(&root, offline, &args, cli.global.format, style),
        Command::Revert(args) => revert(&root, offline, &args, cli.global.format, style),
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

/// The systemd version to plan for: the flag, else the root's installed files.
fn version_for(root: &Root, flag: Option<u32>) -> Result<Option<Version>> {
    if let Some(major) = flag {
        if major == 0 {
            bail!("--systemd-version 0: not a systemd version");
        }
        return Ok(Some(Version {
            major,
            source: "--systemd-version".into(),
        }));
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
            Err(Missing::NotFound) if !explicit && name.as_str() != "docker.service" => continue,
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

fn root_label(root: &Root) -> String {
    if root.is_host() {
        "/".into()
    } else {
        root.host_root().display().to_string()
    }
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
        files: p
            .changes
            .iter()
            .map(|c| FileReport {
                path: c.path.clone(),
                action: serde_json::to_value(c.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                diff: render::diff(&c.path, &c.old, &c.new),
            })
            .collect(),
    }
}

fn live_actions(plans: &[UnitPlan]) -> Vec<String> {
    let mut a = vec!["daemon-reload".to_string()];
    for p in plans.iter().filter(|p| !p.changes.is_empty()) {
        a.push(format!("restart {} if it is running", p.unit));
    }
    a
}

fn fix(root: &Root, offline: bool, args: &FixArgs, format: Format, style: Style) -> Result<i32> {
    let explicit = !args.units.is_empty();
    let units = if explicit {
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
    let dirs = discover::search_path(root)?;
    let version = version_for(root, args.systemd_version)?;
    let mut plans = plan_all(root, &dirs, &units, explicit, version.as_ref(), strategy)?;
    let changed = plans.iter().any(|p| !p.changes.is_empty());
    let preview = args.dry_run || args.check;
    let mut pending = Vec::new();
    let mut actions = if changed {
        live_actions(&plans)
    } else {
        Vec::new()
    };

    if changed && !preview {
        let w = Writer::new(root);
        let _lock = crate::lock::Lock::acquire(root)?;
        // Plan again under the lock: another dropfix may have finished meanwhile.
        plans = plan_all(root, &dirs, &units, explicit, version.as_ref(), strategy)?;
        for p in &plans {
            state::apply_changes(&w, &p.unit, &p.changes)
                .with_context(|| format!("writing the override for {}", p.unit))?;
        }
        if offline || !root.is_host() {
            actions.clear();
        } else {
            actions.clear();
            pending.push(format!(
                "systemctl daemon-reload && systemctl restart {}",
                plans
                    .iter()
                    .filter(|p| !p.changes.is_empty())
                    .map(|p| p.unit.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    let report = FixReport {
        command: "fix".into(),
        root: root_label(root),
        dry_run: preview,
        changed: plans.iter().any(|p| !p.changes.is_empty()),
        units: plans.iter().map(unit_report).collect(),
        actions: if preview { actions } else { Vec::new() },
        pending,
    };
    match format {
        Format::Json => print_json(&report)?,
        Format::Text => print(&render::fix_text(&report, style))?,
    }
    Ok(if args.check && report.changed {
        EXIT_PENDING
    } else {
        0
    })
}

fn revert(
    root: &Root,
    offline: bool,
    args: &RevertArgs,
    format: Format,
    style: Style,
) -> Result<i32> {
    let units: Vec<String> = parse_units(&args.units)?
        .iter()
        .map(|u| u.to_string())
        .collect();
    let w = Writer::new(root);
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::lock::Lock::acquire(root)?)
    };
    let done = state::revert(&w, &units, args.dry_run)?;
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
    let mut pending = Vec::new();
    if !files.is_empty() && !args.dry_run && !offline && root.is_host() {
        let mut us: Vec<&str> = done.iter().map(|r| r.unit.as_str()).collect();
        us.dedup();
        pending.push(format!(
            "systemctl daemon-reload && systemctl restart {}",
            us.join(" ")
        ));
    }
    let report = RevertReport {
        command: "revert".into(),
        root: root_label(root),
        dry_run: args.dry_run,
        changed: !files.is_empty(),
        files,
        skipped,
        pending,
    };
    match format {
        Format::Json => print_json(&report)?,
        Format::Text => print(&render::revert_text(&report, style))?,
    }
    Ok(0)
}
