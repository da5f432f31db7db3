//! Directives: which keys systemd knows per unit type and section, how each kind of value is
//! merged (single value or list), and the simple value rules systemd enforces.

const SERVICE: &str = include_str!("../data/systemd-directives/service");
const SOCKET: &str = include_str!("../data/systemd-directives/socket");
const MOUNT: &str = include_str!("../data/systemd-directives/mount");
const SWAP: &str = include_str!("../data/systemd-directives/swap");
const TIMER: &str = include_str!("../data/systemd-directives/timer");
const PATH: &str = include_str!("../data/systemd-directives/path");
const SLICE: &str = include_str!("../data/systemd-directives/slice");
const SCOPE: &str = include_str!("../data/systemd-directives/scope");
const AUTOMOUNT: &str = include_str!("../data/systemd-directives/automount");
const UNIT: &str = include_str!("../data/systemd-directives/unit");
const INSTALL: &str = include_str!("../data/systemd-directives/install");

fn list_for(unit_type: &str) -> &'static str {
    match unit_type {
        "service" => SERVICE,
        "socket" => SOCKET,
        "mount" => MOUNT,
        "swap" => SWAP,
        "timer" => TIMER,
        "path" => PATH,
        "slice" => SLICE,
        "scope" => SCOPE,
        "automount" => AUTOMOUNT,
        _ => "",
    }
}

fn section_has(text: &str, section: &str, key: &str) -> bool {
    let mut current = "";
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s;
        } else if current == section && line.strip_suffix('=') == Some(key) {
            return true;
        }
    }
    false
}

/// Does systemd know `section`.`key` for a unit of this type?
pub fn known(unit_type: &str, section: &str, key: &str) -> bool {
    match section {
        "Unit" => section_has(UNIT, "Unit", key) || section_has(list_for(unit_type), "Unit", key),
        "Install" => section_has(INSTALL, "Install", key),
        _ => section_has(list_for(unit_type), section, key),
    }
}

/// Sections a unit of this type has.
pub fn sections(unit_type: &str) -> Vec<&'static str> {
    let mut out = vec!["Unit"];
    for line in list_for(unit_type).lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if s != "Unit" && s != "Install" && !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.push("Install");
    out
}

/// How assignments of a key combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The last assignment wins; an empty one resets to the default.
    Single,
    /// Every assignment adds; an empty one clears what came before.
    List,
    /// Dependencies: every assignment adds, and they cannot be reset (systemd.unit(5): "it is
    /// not possible to reset the list"); an empty assignment does nothing.
    Deps,
}

/// Dependency settings: lists that a drop-in can only add to.
const DEP_KEYS: &[&str] = &[
    "After",
    "Before",
    "Wants",
    "Requires",
    "Requisite",
    "BindsTo",
    "PartOf",
    "Upholds",
    "Conflicts",
    "OnFailure",
    "OnSuccess",
    "PropagatesReloadTo",
    "ReloadPropagatedFrom",
    "PropagatesStopTo",
    "StopPropagatedFrom",
    "JoinsNamespaceOf",
    "WantedBy",
    "RequiredBy",
    "UpheldBy",
    "Also",
    "Alias",
];

/// Keys whose assignments accumulate (systemd.unit(5), systemd.exec(5), systemd.service(5)).
const LIST_KEYS: &[&str] = &[
    "RequiresMountsFor",
    "Documentation",
    "Environment",
    "EnvironmentFile",
    "PassEnvironment",
    "UnsetEnvironment",
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecCondition",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "ReadWriteDirectories",
    "ReadOnlyDirectories",
    "InaccessibleDirectories",
    "BindPaths",
    "BindReadOnlyPaths",
    "TemporaryFileSystem",
    "SupplementaryGroups",
    "DeviceAllow",
    "SystemCallFilter",
    "SystemCallArchitectures",
    "RestrictAddressFamilies",
    "AmbientCapabilities",
    "CapabilityBoundingSet",
    "Sockets",
    "SuccessExitStatus",
    "RestartPreventExitStatus",
    "RestartForceExitStatus",
    "LogExtraFields",
    "ListenStream",
    "ListenDatagram",
    "ListenSequentialPacket",
    "ListenFIFO",
    "ListenSpecial",
    "ListenNetlink",
    "ListenMessageQueue",
    "ListenUSBFunction",
    "Symlinks",
    "ExecStartPre",
    "RuntimeDirectory",
    "StateDirectory",
    "CacheDirectory",
    "LogsDirectory",
    "ConfigurationDirectory",
    "LoadCredential",
    "SetCredential",
    "MountImages",
    "ExtensionImages",
    "ExtensionDirectories",
    "IPAddressAllow",
    "IPAddressDeny",
    "OnCalendar",
    "OnActiveSec",
    "OnBootSec",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
    "PathExists",
    "PathExistsGlob",
    "PathChanged",
    "PathModified",
    "DirectoryNotEmpty",
];

/// How a key's assignments combine.
pub fn merge_kind(key: &str) -> Merge {
    if DEP_KEYS.contains(&key) {
        Merge::Deps
    } else if LIST_KEYS.contains(&key) || key.starts_with("Condition") || key.starts_with("Assert")
    {
        Merge::List
    } else {
        Merge::Single
    }
}

const BOOL_KEYS: &[&str] = &[
    "PrivateTmp",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateMounts",
    "PrivateUsers",
    "PrivateIPC",
    "NoNewPrivileges",
    "RemainAfterExit",
    "DynamicUser",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "IgnoreSIGPIPE",
    "SendSIGKILL",
    "SendSIGHUP",
    "GuessMainPID",
    "PermissionsStartOnly",
    "RootDirectoryStartOnly",
    "TTYReset",
    "TTYVHangup",
    "TTYVTDisallocate",
    "CPUAccounting",
    "MemoryAccounting",
    "IOAccounting",
    "BlockIOAccounting",
    "TasksAccounting",
    "IPAccounting",
    "DefaultDependencies",
    "StopWhenUnneeded",
    "RefuseManualStart",
    "RefuseManualStop",
    "AllowIsolate",
    "IgnoreOnIsolate",
    "MountAPIVFS",
    "RemoveIPC",
    "Accept",
    "Writable",
    "NonBlocking",
    "Persistent",
    "WakeSystem",
    "RemainAfterElapse",
    "LazyUnmount",
    "ForceUnmount",
    "SloppyOptions",
    "ReadWriteOnly",
];

/// Booleans as systemd's `parse_boolean()` takes them.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

const ENUMS: &[(&str, &[&str])] = &[
    ("MountFlags", &["shared", "slave", "private"]),
    (
        "Type",
        &[
            "simple",
            "exec",
            "forking",
            "oneshot",
            "dbus",
            "notify",
            "notify-reload",
            "idle",
        ],
    ),
    (
        "Restart",
        &[
            "no",
            "on-success",
            "on-failure",
            "on-abnormal",
            "on-watchdog",
            "on-abort",
            "always",
        ],
    ),
    ("KillMode", &["control-group", "process", "mixed", "none"]),
    ("NotifyAccess", &["none", "main", "exec", "all"]),
    ("DevicePolicy", &["auto", "closed", "strict"]),
    ("OOMPolicy", &["continue", "stop", "kill"]),
    ("ExitType", &["main", "cgroup"]),
    (
        "ProtectSystem",
        &[
            "yes", "no", "true", "false", "1", "0", "on", "off", "full", "strict",
        ],
    ),
    (
        "ProtectHome",
        &[
            "yes",
            "no",
            "true",
            "false",
            "1",
            "0",
            "on",
            "off",
            "read-only",
            "tmpfs",
        ],
    ),
    (
        "ProtectProc",
        &["noaccess", "invisible", "ptraceable", "default"],
    ),
    ("ProcSubset", &["all", "pid"]),
    ("CollectMode", &["inactive", "inactive-or-failed"]),
];

const LIMIT_KEYS: &[&str] = &[
    "LimitCPU",
    "LimitFSIZE",
    "LimitDATA",
    "LimitSTACK",
    "LimitCORE",
    "LimitRSS",
    "LimitNOFILE",
    "LimitAS",
    "LimitNPROC",
    "LimitMEMLOCK",
    "LimitLOCKS",
    "LimitSIGPENDING",
    "LimitMSGQUEUE",
    "LimitNICE",
    "LimitRTPRIO",
    "LimitRTTIME",
];

const TIME_KEYS: &[&str] = &[
    "TimeoutSec",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "TimeoutAbortSec",
    "RestartSec",
    "RestartMaxDelaySec",
    "WatchdogSec",
    "RuntimeMaxSec",
    "RuntimeRandomizedExtraSec",
    "StartLimitIntervalSec",
    "StartLimitInterval",
    "JobTimeoutSec",
    "JobRunningTimeoutSec",
    "TimeoutIdleSec",
    "AccuracySec",
    "RandomizedDelaySec",
];

const BYTE_KEYS: &[&str] = &[
    "MemoryMax",
    "MemoryHigh",
    "MemoryLow",
    "MemoryMin",
    "MemorySwapMax",
    "MemoryLimit",
];

const UINT_KEYS: &[&str] = &["StartLimitBurst", "TasksMax"];

/// A size with an optional 1024-based suffix, as `parse_size()` takes it.
fn is_size(v: &str) -> bool {
    let n = v.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'E']);
    !n.is_empty() && n.len() + 1 >= v.len() && n.parse::<f64>().is_ok_and(|f| f >= 0.0)
}

/// A time span as `parse_sec()` takes it: "90", "5min 20s", "1h30m", "500ms", "infinity".
pub fn parse_timespan_usec(v: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] = &[
        ("usec", 1),
        ("us", 1),
        ("μs", 1),
        ("msec", 1_000),
        ("ms", 1_000),
        ("seconds", 1_000_000),
        ("second", 1_000_000),
        ("sec", 1_000_000),
        ("s", 1_000_000),
        ("minutes", 60_000_000),
        ("minute", 60_000_000),
        ("min", 60_000_000),
        ("m", 60_000_000),
        ("hours", 3_600_000_000),
        ("hour", 3_600_000_000),
        ("hr", 3_600_000_000),
        ("h", 3_600_000_000),
        ("days", 86_400_000_000),
        ("day", 86_400_000_000),
        ("d", 86_400_000_000),
        ("weeks", 604_800_000_000),
        ("week", 604_800_000_000),
        ("w", 604_800_000_000),
    ];
    let v = v.trim();
    if v == "infinity" {
        return Some(u64::MAX);
    }
    if v.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = v;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        let mult = if unit.is_empty() {
            1_000_000
        } else {
            UNITS.iter().find(|(u, _)| *u == unit)?.1
        };
        total = total.checked_add((num * mult as f64) as u64)?;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// A resource limit value: `N`, `infinity`, or `soft:hard`; the hard part, as systemd stores it.
pub fn parse_limit(key: &str, v: &str) -> Option<(u64, u64)> {
    let one = |s: &str| -> Option<u64> {
        if s == "infinity" {
            return Some(u64::MAX);
        }
        if key == "LimitCPU" || key == "LimitRTTIME" {
            return parse_timespan_usec(s)
                .map(|u| if key == "LimitCPU" { u / 1_000_000 } else { u });
        }
        if [
            "LimitFSIZE",
            "LimitDATA",
            "LimitSTACK",
            "LimitCORE",
            "LimitRSS",
            "LimitAS",
            "LimitMEMLOCK",
            "LimitMSGQUEUE",
        ]
        .contains(&key)
        {
            let n = s.trim_end_matches(['K', 'M', 'G', 'T', 'P', 'E']);
            let base: u64 = n.parse().ok()?;
            let mult = match &s[n.len()..] {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                "P" => 1 << 50,
                "E" => 1 << 60,
                _ => return None,
            };
            return base.checked_mul(mult);
        }
        s.parse().ok()
    };
    match v.split_once(':') {
        Some((soft, hard)) => Some((one(soft)?, one(hard)?)),
        None => one(v).map(|x| (x, x)),
    }
}

/// Check a value the way systemd would, where the rule is simple. Err says why it would be
/// ignored.
pub fn check_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(()); // an empty assignment resets: always valid
    }
    if BOOL_KEYS.contains(&key) && parse_bool(value).is_none() {
        return Err(format!(
            "{key}= takes a boolean (yes/no, true/false, on/off, 1/0), not '{value}'"
        ));
    }
    if let Some((_, allowed)) = ENUMS.iter().find(|(k, _)| *k == key) {
        if !allowed.contains(&value) {
            return Err(format!(
                "{key}= takes one of {}, not '{value}'",
                allowed.join(", ")
            ));
        }
    }
    if LIMIT_KEYS.contains(&key) && parse_limit(key, value).is_none() {
        return Err(format!(
            "{key}= takes a number, 'infinity' or soft:hard, not '{value}'"
        ));
    }
    if TIME_KEYS.contains(&key) && parse_timespan_usec(value).is_none() {
        return Err(format!(
            "{key}= takes a time span such as 90, 5min 20s or infinity, not '{value}'"
        ));
    }
    if BYTE_KEYS.contains(&key)
        && value != "infinity"
        && !is_size(value)
        && !value
            .strip_suffix('%')
            .is_some_and(|p| p.parse::<f64>().is_ok_and(|f| (0.0..=100.0).contains(&f)))
    {
        return Err(format!(
            "{key}= takes a size such as 512M, a percentage or infinity, not '{value}'"
        ));
    }
    if UINT_KEYS.contains(&key)
        && value != "infinity"
        && value.parse::<u64>().is_err()
        && !(key == "TasksMax"
            && value
                .strip_suffix('%')
                .is_some_and(|p| p.parse::<f64>().is_ok()))
    {
        return Err(format!(
            "{key}= takes a whole number{}, not '{value}'",
            if key == "TasksMax" {
                ", a percentage or infinity"
            } else {
                ""
            }
        ));
    }
    if key == "Nice" && !value.parse::<i32>().is_ok_and(|n| (-20..=19).contains(&n)) {
        return Err(format!(
            "Nice= takes a number from -20 to 19, not '{value}'"
        ));
    }
    if key == "OOMScoreAdjust"
        && !value
            .parse::<i32>()
            .is_ok_and(|n| (-1000..=1000).contains(&n))
    {
        return Err(format!(
            "OOMScoreAdjust= takes a number from -1000 to 1000, not '{value}'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_per_type_and_section() {
        assert!(known("service", "Service", "MountFlags"));
        assert!(known("service", "Service", "LimitNOFILE"));
        assert!(known("service", "Unit", "After"));
        assert!(known("socket", "Unit", "Description"));
        assert!(known("socket", "Socket", "MountFlags"));
        assert!(!known("service", "Service", "MountFlag"));
        assert!(!known("service", "Socket", "ListenStream"));
        assert!(!known("timer", "Service", "MountFlags"));
        assert!(known("service", "Install", "WantedBy"));
        assert_eq!(sections("service"), ["Unit", "Service", "Install"]);
    }

    #[test]
    fn simple_value_rules() {
        assert!(check_value("PrivateTmp", "yes").is_ok());
        assert!(check_value("PrivateTmp", "maybe").is_err());
        assert!(check_value("MountFlags", "slave").is_ok());
        assert!(check_value("MountFlags", "rslave").is_err());
        assert!(check_value("MountFlags", "").is_ok());
        assert!(check_value("LimitNOFILE", "4096").is_ok());
        assert!(check_value("LimitNOFILE", "1024:4096").is_ok());
        assert!(check_value("LimitNOFILE", "infinity").is_ok());
        assert!(check_value("LimitNOFILE", "lots").is_err());
        assert!(check_value("TimeoutStartSec", "5min 20s").is_ok());
        assert!(check_value("TimeoutStartSec", "5 parsecs").is_err());
        assert!(check_value("MemoryMax", "512M").is_ok());
        assert!(check_value("MemoryMax", "512Q").is_err());
        assert!(check_value("TasksMax", "50%").is_ok());
        assert!(check_value("Nice", "30").is_err());
        assert!(check_value("Environment", "anything goes").is_ok());
    }

    #[test]
    fn time_spans_and_limits_parse_like_systemd() {
        assert_eq!(parse_timespan_usec("90"), Some(90_000_000));
        assert_eq!(parse_timespan_usec("5min 20s"), Some(320_000_000));
        assert_eq!(parse_timespan_usec("100ms"), Some(100_000));
        assert_eq!(parse_timespan_usec("1h30m"), Some(5_400_000_000));
        assert_eq!(parse_timespan_usec("0"), Some(0));
        assert_eq!(parse_timespan_usec("-1"), None);
        assert_eq!(parse_limit("LimitNOFILE", "1024:4096"), Some((1024, 4096)));
        assert_eq!(
            parse_limit("LimitCORE", "infinity"),
            Some((u64::MAX, u64::MAX))
        );
        assert_eq!(parse_limit("LimitMEMLOCK", "64K"), Some((65536, 65536)));
    }

    #[test]
    fn list_keys_accumulate() {
        assert_eq!(merge_kind("Environment"), Merge::List);
        assert_eq!(merge_kind("ConditionPathExists"), Merge::List);
        assert_eq!(merge_kind("LimitNOFILE"), Merge::Single);
        assert_eq!(merge_kind("Requires"), Merge::Deps);
    }
}
