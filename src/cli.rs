//! Command-line definitions (clap). The core never sees these types: `app` converts them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const ABOUT: &str = "Make docker's network namespaces reachable from the host again.";

const LONG_ABOUT: &str = "\
Make docker's network namespaces reachable from the host again.

Old docker.service units (Docker before 1.12, CoreOS Container Linux) set MountFlags=slave. \
That gives dockerd a mount namespace of its own, so the namespace mounts it makes under \
/var/run/docker/netns never reach the host and `nsenter --net=...` or `ip netns exec` fail \
with \"Invalid argument\".

dropfix reads the unit exactly as systemd does (fragment plus every drop-in, in systemd's \
order), writes the override that works on this systemd version into /etc/systemd/system \
(never /usr), shows it as a diff first, and can undo it exactly. On a live host it then \
reloads systemd and restarts docker over D-Bus, checks the fix took, and rolls back if not.";

const AFTER_HELP: &str = "\
Examples:
  dropfix fix --dry-run                      preview the fix for this host
  dropfix fix --root /mnt/image --check      exit 3 if an image still needs the fix
  dropfix fix --yes                          fix, reload and restart docker without asking
  dropfix revert                             undo everything dropfix did

Exit status: 0 done or nothing to do, 1 error, 2 usage, 3 --check found a pending change.";

/// dropfix command line.
#[derive(Debug, Parser)]
#[command(name = "dropfix", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Work offline on an image or mounted root instead of the running host: files only, no
    /// D-Bus, no reload or restart.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Output for people (text), one JSON object on stdout for machines, or (doctor only)
    /// Prometheus metrics.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Colour: auto uses it on a terminal unless NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
    pub color: Color,
    /// JSON reports carry each changed file's whole text before and after (the Ansible module's
    /// diff mode).
    #[arg(long, global = true, hide = true)]
    pub with_contents: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Remove MountFlags from docker.service (and early-docker.service where it exists).
    ///
    /// Shows the change as a unified diff, then writes it atomically. With no UNIT, acts on
    /// docker.service, plus early-docker.service where that unit exists.
    Fix(FixArgs),
    /// Undo what dropfix did: restore every file it replaced, remove every file it created.
    ///
    /// A file changed by someone else since dropfix wrote it is left alone, and said so.
    Revert(RevertArgs),
    /// Say what is wrong on a live host, with evidence, before anyone edits anything.
    ///
    /// Per unit: MountFlags as systemd runs it and as the files say (and which files set it),
    /// whether systemd has loaded the files on disk, whether the main process shares PID 1's
    /// mount namespace. For the host: every namespace file under /run/docker/netns and
    /// /run/netns (enterable, or a plain file whose mount lives elsewhere, and who holds it),
    /// services holding mounts under docker's directories in their own namespace ("device or
    /// resource busy"), and the systemd version's empty-MountFlags trap. Read-only. Exit 0
    /// healthy, 3 a problem was found, 1 it could not check.
    Doctor(DoctorArgs),
    /// List every service whose mount namespace hides its mounts from the host.
    ///
    /// Live: every loaded service, from systemd's own properties. With --root: every unit
    /// file found, merged as systemd would. MountFlags=slave/private and the sandboxing
    /// settings that do the same (PrivateTmp=, ProtectSystem=, ReadOnlyPaths=, ...).
    Scan(ScanArgs),
    /// Every effective setting of a unit, with the file and line that decided it.
    ///
    /// Assignments a later one overrode, or an empty assignment cleared, are listed beneath;
    /// so are drop-ins systemd hides, masks or skips, with the reason. Live, systemd's own
    /// value is shown beside each setting it exposes as a property, and any disagreement or
    /// pending reload is flagged.
    Show(ShowArgs),
    /// Set unit settings in dropfix's own drop-in, previewed as a diff, reverted exactly.
    ///
    /// One late-sorting drop-in per unit holds every setting set this way. A list setting
    /// (Environment=, ExecStartPre=, ...) gains the value; --reset clears the list first, the
    /// systemd way (an empty assignment). Keys systemd does not know for the unit's type and
    /// section, and values it would reject, are refused.
    Set(SetArgs),
    /// Remove dropfix's own assignments of unit settings (the vendor's values apply again).
    Unset(UnsetArgs),
    /// Write the man pages or shell completions built from these definitions (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
    /// Ansible's binary-module protocol: JSON arguments file in, one JSON result on stdout.
    #[command(hide = true)]
    AnsibleModule(AnsibleModuleArgs),
}

/// `dropfix ansible-module` (hidden): what packaging/ansible/plugins/modules/dropfix execs.
#[derive(Debug, Args)]
pub struct AnsibleModuleArgs {
    /// The arguments file Ansible wrote (a JSON object).
    #[arg(value_name = "ARGS_FILE")]
    pub args_file: PathBuf,
}

/// `dropfix generate` (hidden): text built from the clap definitions, so it is never written
/// twice.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[command(subcommand)]
    pub what: Generate,
}

/// What `dropfix generate` writes.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// dropfix.1 and one page a subcommand (dropfix-fix.1, ...), in roff, into DIR.
    Man {
        /// Directory to write the pages into (created when missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The completion script for SHELL, on stdout.
    Completions {
        /// Shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// An Ignition config (spec 3.3.0), on stdout, that installs FILE's bytes from URL at
    /// /opt/bin/dropfix (checked against FILE's SHA-512) and enables dropfix-firstboot.service.
    Ignition {
        /// The static dropfix binary that will be served at URL (it is hashed, not embedded).
        #[arg(long, value_name = "FILE")]
        binary: PathBuf,
        /// Where the machines fetch it (http, https, tftp, s3 or gs).
        #[arg(long, value_name = "URL")]
        url: String,
    },
}

/// Writes what `dropfix generate` asks for.
pub fn generate(what: &Generate) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    let cmd = Cli::command();
    let text = match what {
        Generate::Man { dir } => return crate::manual::write_man_pages(cmd, dir),
        // Into memory first: clap_complete panics on a write error (a closed pipe).
        Generate::Completions { shell } => crate::manual::completions(*shell, &mut cmd.clone()),
        Generate::Ignition { binary, url } => {
            crate::ignition::check_url(url).map_err(anyhow::Error::msg)?;
            let bytes = std::fs::read(binary)
                .with_context(|| format!("--binary {}: cannot read", binary.display()))?;
            if !bytes.starts_with(b"\x7fELF") {
                anyhow::bail!("--binary {}: not an ELF executable", binary.display());
            }
            crate::ignition::config(url, &sha512_hex(&bytes)).into_bytes()
        }
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&text).context("writing output")?;
    out.flush().context("writing output")
}

/// SHA-512 of `bytes` in lowercase hex, as Ignition's `verification.hash` wants it.
fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let mut hex = String::with_capacity(128);
    for b in sha2::Sha512::digest(bytes) {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// `dropfix doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Units to examine (default: docker.service, and early-docker.service where it exists).
    #[arg(value_name = "UNIT", conflicts_with = "netns")]
    pub units: Vec<String>,
    /// Write the report to FILE atomically (a temp file beside it, renamed over it) instead
    /// of stdout: what node_exporter's textfile collector wants. The directory must exist.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Explain only these network-namespace files (as PID 1 sees them): whether the host can
    /// enter each, and if not, who holds it, why (the unit setting with file:line, or the
    /// container's propagation) and what to change. Exit 0 every path can be entered, 3 one
    /// cannot, 1 one does not exist or is not a network-namespace file.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub netns: Vec<String>,
}

/// `dropfix scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Plan for this systemd version (offline; `shared` hides mounts before 242).
    #[arg(long, value_name = "N")]
    pub systemd_version: Option<u32>,
}

/// `dropfix show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The unit (a bare name means .service).
    #[arg(value_name = "UNIT")]
    pub unit: String,
    /// Only these settings, as Section.Key or Key (e.g. Service.LimitNOFILE).
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
}

/// Restart behaviour of `set` and `unset`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Restart the unit so the change takes effect (most settings need it); asks first on a
    /// terminal.
    #[arg(long)]
    pub restart: bool,
    /// With --restart: do not ask (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Seconds to wait for the restart job before treating it as failed.
    #[arg(long, default_value_t = 300, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// `dropfix set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The unit (a bare name means .service).
    #[arg(value_name = "UNIT")]
    pub unit: String,
    /// Assignments as Section.Key=Value, e.g. Service.LimitNOFILE=4096.
    #[arg(value_name = "SECTION.KEY=VALUE", required = true)]
    pub assignments: Vec<String>,
    /// For list settings: clear the list first (write the empty assignment before the value).
    #[arg(long)]
    pub reset: bool,
    /// Show what would change; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Like --dry-run, for scripts: exit 3 when a change is pending.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Restart options.
    #[command(flatten)]
    pub restart: RestartArgs,
}

/// `dropfix unset`.
#[derive(Debug, Args)]
pub struct UnsetArgs {
    /// The unit (a bare name means .service).
    #[arg(value_name = "UNIT")]
    pub unit: String,
    /// Settings as Section.Key.
    #[arg(value_name = "SECTION.KEY", required = true)]
    pub keys: Vec<String>,
    /// Show what would change; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Like --dry-run, for scripts: exit 3 when a change is pending.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Restart options.
    #[command(flatten)]
    pub restart: RestartArgs,
}

/// Options shared by commands that may reload and restart.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Restart without asking (restarting docker stops its containers unless live-restore is
    /// on). Needed when there is no terminal to ask on.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Write and reload only; the restart stays pending (the unit picks the change up on its
    /// next start).
    #[arg(long)]
    pub no_restart: bool,
    /// Seconds to wait for the restart job before treating it as failed.
    #[arg(long, default_value_t = 300, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// `dropfix fix`.
#[derive(Debug, Args)]
pub struct FixArgs {
    /// Units to fix (a bare name means .service). Default: docker.service and, where it exists,
    /// early-docker.service.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
    /// Show what would change, as a unified diff; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Like --dry-run, for scripts: exit 3 when a change is pending, 0 when not.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Plan for this systemd version instead of asking systemd or reading the root's files.
    #[arg(long, value_name = "N")]
    pub systemd_version: Option<u32>,
    /// Force the override's form. drop-in: an empty MountFlags= in a late drop-in (systemd
    /// < 229 or >= 233). full-copy: a copy of the unit in /etc/systemd/system without it
    /// (any version).
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Also make `ip netns list/exec` see docker's namespaces: /run/netns becomes a link to
    /// /run/docker/netns (now, and at every boot through /etc/tmpfiles.d). Refused when
    /// /run/netns already holds namespaces. `revert` undoes it.
    #[arg(long)]
    pub link_ip_netns: bool,
    /// Replace a copy of the unit in /etc/systemd/system that dropfix did not make (it hides
    /// every later vendor change) with drop-ins over the vendor file: one with the settings the
    /// copy changes, and dropfix's MountFlags drop-in. Only where drop-ins say exactly what the
    /// copy says and this systemd takes an empty MountFlags=; previewed, and `revert` puts the
    /// copy back. dropfix's own copies move to drop-ins by themselves once systemd allows.
    #[arg(long)]
    pub replace_copy: bool,
    /// Reload/restart behaviour on a live host.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// `dropfix revert`.
#[derive(Debug, Args)]
pub struct RevertArgs {
    /// Units to revert. Default: everything dropfix changed.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
    /// Show what would be restored; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Reload/restart behaviour on a live host.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Text,
    /// One JSON object on stdout.
    Json,
    /// Prometheus text format for node_exporter's textfile collector (doctor only).
    Prometheus,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// On a terminal, unless NO_COLOR is set or TERM=dumb.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `--strategy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Empty MountFlags= in a late-sorting drop-in.
    DropIn,
    /// Copy of the unit without MountFlags.
    FullCopy,
}
