//! Manual pages and shell completions, built from the clap definitions, plus what clap does not
//! know: the EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES and SEE ALSO sections, and unit names
//! completed from `systemctl list-unit-files`.

use anyhow::{Context, Result};
use std::path::Path;

/// Exit statuses, as README's table has them.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Done, nothing to do, or (doctor) healthy."),
    ("1", "Error: bad input, unit not found or masked, no root or no system bus, a write, reload, restart or verification failed (the previous files are back), or a restart needs consent and there is no terminal (nothing written)."),
    ("2", "Usage error (unknown option or value, or --format prometheus for a command other than doctor)."),
    ("3", "fix --check or set --check found a pending change; doctor found a problem."),
    ("4", "fix is in force, but network namespaces are still held in another mount namespace and cannot be entered from the host (containers kept running by live-restore); the report says what helps, e.g. docker restart c1 c2."),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    ("DBUS_SYSTEM_BUS_ADDRESS", "The system bus dropfix talks to systemd on (default unix:path=/run/dbus/system_bus_socket). Not used with --root."),
    ("NO_COLOR", "When set (to anything), --color auto prints no colour."),
];

const FILES: &[(&str, &str)] = &[
    ("/etc/systemd/system/*.d/zz-dropfix-*.conf", "dropfix's drop-ins: zz-dropfix-mountflags.conf (fix) and zz-dropfix-settings.conf (set). Full copies (--strategy full-copy) are /etc/systemd/system/UNIT itself."),
    ("/var/lib/dropfix/state.json", "What dropfix wrote and what it replaced, so that revert restores it exactly; removed by the revert that empties it."),
    ("/run/dropfix.lock", "Held while a command changes files, so two runs never interleave."),
    ("/run/docker.sock", "The Docker Engine API, asked which container a network namespace belongs to and whether live-restore is on."),
    ("/run/docker/netns, /run/netns", "The network-namespace files doctor classifies as enterable, stale or held."),
];

/// EXAMPLES for each page, by subcommand ("" for dropfix(1)).
fn examples(sub: &str) -> &'static [(&'static str, &'static str)] {
    match sub {
        "" => &[
            ("dropfix doctor", "Say what is wrong on this host, with evidence."),
            ("dropfix fix --dry-run", "Preview the fix for this host as a diff."),
            ("dropfix fix --yes", "Fix, reload and restart docker without asking."),
            ("dropfix revert", "Undo everything dropfix did."),
        ],
        "fix" => &[
            ("dropfix fix --dry-run", "Show the override as a unified diff; write nothing."),
            ("dropfix fix --root /mnt/image --check", "Exit 3 if an image still needs the fix."),
            ("dropfix fix --no-restart", "Write and reload; docker picks the change up on its next start."),
            ("dropfix fix --yes --format json", "Fix without asking and print one JSON report."),
        ],
        "revert" => &[
            ("dropfix revert --dry-run", "Show what would be restored."),
            ("dropfix revert --yes", "Restore every file and restart docker without asking."),
        ],
        "doctor" => &[
            ("dropfix doctor", "Findings for docker.service and the host, each with its fix."),
            ("dropfix doctor --format json", "The same as one JSON object."),
            ("dropfix doctor --format prometheus --output /var/lib/node_exporter/textfile_collector/dropfix.prom", "Metrics for node_exporter's textfile collector, written atomically (what dropfix-doctor.service runs)."),
        ],
        "scan" => &[("dropfix scan", "Every loaded service whose mount namespace hides its mounts.")],
        "show" => &[
            ("dropfix show docker", "Every effective setting of docker.service and the line that set it."),
            ("dropfix show docker MountFlags", "Only MountFlags."),
        ],
        "set" => &[
            ("dropfix set docker Service.LimitNOFILE=1048576 --dry-run", "Preview the drop-in."),
            ("dropfix set docker Service.Environment=HTTP_PROXY=http://proxy:3128 --restart --yes", "Add to a list setting and restart."),
        ],
        "unset" => &[("dropfix unset docker Service.LimitNOFILE", "The vendor's value applies again.")],
        _ => &[],
    }
}

const SEE_ALSO_OTHERS: &[&str] = &[
    "systemd.exec(5)",
    "systemd.unit(5)",
    "systemctl(1)",
    "nsenter(1)",
    "ip-netns(8)",
    "dockerd(8)",
];

/// Text escaped for roff: backslashes, and hyphens as \- so that they stay hyphens; a leading
/// dot or quote is protected.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn tagged(out: &mut String, title: &str, items: &[(&str, &str)], bold: bool) {
    out.push_str(&format!(".SH \"{title}\"\n"));
    for (tag, text) in items {
        let tag = if bold {
            format!("\\fB{}\\fR", roff(tag))
        } else {
            roff(tag)
        };
        out.push_str(&format!(".TP\n{tag}\n{}\n", roff(text)));
    }
}

/// The sections clap does not know, for the page of `sub` ("" for dropfix(1)).
pub fn extra_sections(sub: &str, pages: &[String]) -> String {
    let mut out = String::new();
    tagged(&mut out, "EXIT STATUS", EXIT_STATUS, true);
    tagged(&mut out, "ENVIRONMENT", ENVIRONMENT, true);
    tagged(&mut out, "FILES", FILES, false);
    let ex = examples(sub);
    if !ex.is_empty() {
        out.push_str(".SH EXAMPLES\n");
        for (cmd, what) in ex {
            out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(cmd), roff(what)));
        }
    }
    let this = if sub.is_empty() {
        "dropfix".to_string()
    } else {
        format!("dropfix-{sub}")
    };
    let refs: Vec<String> = pages
        .iter()
        .filter(|p| **p != this)
        .map(|p| format!("\\fB{}\\fR(1)", roff(p)))
        .chain(SEE_ALSO_OTHERS.iter().map(|r| {
            let (name, sec) = r.split_once('(').unwrap_or((r, ""));
            format!("\\fB{}\\fR({sec}", roff(name))
        }))
        .collect();
    out.push_str(&format!(".SH \"SEE ALSO\"\n{}\n", refs.join(",\n")));
    out
}

/// Write dropfix.1 and one page a visible subcommand into `dir`, creating it.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "generate man {}: cannot create the directory",
            dir.display()
        )
    })?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut pages = vec!["dropfix".to_string()];
    pages.extend(subs.iter().map(|s| format!("dropfix-{}", s.get_name())));
    let mut all = vec![("".to_string(), cmd.clone())];
    all.extend(subs.into_iter().map(|s| (s.get_name().to_string(), s)));
    for (sub, c) in all {
        let man = clap_mangen::Man::new(c);
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)
            .with_context(|| format!("rendering {}", path.display()))?;
        text.extend_from_slice(extra_sections(&sub, &pages).as_bytes());
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The subcommands whose positional arguments are unit names, and whether every positional is
/// one (fix, revert, doctor) or only the first (show, set, unset).
const UNIT_ARGS: &[(&str, bool)] = &[
    ("fix", true),
    ("revert", true),
    ("doctor", true),
    ("show", false),
    ("set", false),
    ("unset", false),
];

/// Options of any subcommand that take a value (their value is no unit name).
const VALUE_OPTIONS: &str =
    "--root|--format|--color|--systemd-version|--strategy|--timeout|--output|-o";

const LIST_UNITS: &str = "systemctl list-unit-files --type=service --no-legend 2>/dev/null";

/// A completion script: clap_complete's, with service names offered where a UNIT goes.
pub fn completions(shell: clap_complete::Shell, cmd: &mut clap::Command) -> Vec<u8> {
    use clap_complete::Shell;
    let mut text = Vec::new();
    clap_complete::generate(shell, cmd, "dropfix", &mut text);
    let script = String::from_utf8_lossy(&text).into_owned();
    let out = match shell {
        Shell::Bash => bash_units(script),
        Shell::Zsh => zsh_units(script),
        Shell::Fish => fish_units(script),
        _ => script,
    };
    out.into_bytes()
}

fn bash_units(mut script: String) -> String {
    let every: Vec<&str> = UNIT_ARGS.iter().filter(|u| u.1).map(|u| u.0).collect();
    let first: Vec<&str> = UNIT_ARGS.iter().filter(|u| !u.1).map(|u| u.0).collect();
    script.push_str(&format!(
        r#"
# Unit names where a UNIT goes, from systemd; everything else as above.
_dropfix_units() {{
    {LIST_UNITS} | awk '{{print $1}}'
}}
_dropfix_with_units() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} sub= npos=0 i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${{COMP_WORDS[i]}}
        case $w in
            {VALUE_OPTIONS}) ((i++)) ;;
            -*) ;;
            *) if [[ -z $sub ]]; then sub=$w; else ((npos++)); fi ;;
        esac
    done
    if [[ $cur != -* && ! $prev =~ ^({VALUE_OPTIONS})$ ]]; then
        case $sub in
            {every}) COMPREPLY=($(compgen -W "$(_dropfix_units)" -- "$cur")); return 0 ;;
            {first}) if ((npos == 0)); then COMPREPLY=($(compgen -W "$(_dropfix_units)" -- "$cur")); return 0; fi ;;
        esac
    fi
    _dropfix "$@"
}}
complete -F _dropfix_with_units -o nosort -o bashdefault -o default dropfix
"#,
        every = every.join("|"),
        first = first.join("|"),
    ));
    script
}

fn zsh_units(script: String) -> String {
    let mut out = String::with_capacity(script.len() + 512);
    let mut defined = false;
    for line in script.split_inclusive('\n') {
        if !defined && line.starts_with("if [ \"$funcstack[1]\" = \"_dropfix\" ]") {
            out.push_str(&format!(
                "(( $+functions[_dropfix_units] )) ||\n_dropfix_units() {{\n    local -a units\n    units=(${{(f)\"$({LIST_UNITS} | awk '{{print $1}}')\"}})\n    compadd -a units\n}}\n\n"
            ));
            defined = true;
        }
        let unit_arg = line.starts_with("'*::units -- ") || line.starts_with("':unit -- ");
        if unit_arg && line.contains(":_default'") {
            out.push_str(&line.replacen(":_default'", ":_dropfix_units'", 1));
        } else {
            out.push_str(line);
        }
    }
    out
}

fn fish_units(mut script: String) -> String {
    let subs: Vec<&str> = UNIT_ARGS.iter().map(|u| u.0).collect();
    script.push_str(&format!(
        "# Unit names where a UNIT goes, from systemd.\ncomplete -c dropfix -n \"__fish_seen_subcommand_from {}\" -f -a \"({LIST_UNITS} | string replace -r '\\\\s.*' '')\"\n",
        subs.join(" ")
    ));
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_keeps_hyphens_and_protects_a_leading_dot() {
        assert_eq!(roff("--no-restart"), "\\-\\-no\\-restart");
        assert_eq!(roff(".hidden"), "\\&.hidden");
    }
}
