//! Unit names: systemd's validity rules (`unit_name_is_valid()`), templates, prefixes, D-Bus paths.

use std::fmt;

/// systemd's `UNIT_NAME_MAX`.
pub const UNIT_NAME_MAX: usize = 255;

/// Unit type suffixes systemd knows (`unit_type_table`).
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

const VALID_CHARS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\";

/// A valid unit name, plain (`docker.service`) or instance (`foo@bar.service`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName(String);

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl UnitName {
    /// Accept a name as a user types it: a bare `docker` means `docker.service` (as systemctl does).
    pub fn from_user(s: &str) -> Result<Self, String> {
        let has_type = s
            .rsplit_once('.')
            .is_some_and(|(_, t)| UNIT_TYPES.contains(&t));
        let full = if has_type {
            s.to_string()
        } else {
            format!("{s}.service")
        };
        Self::parse(&full).map_err(|why| format!("invalid unit name '{s}': {why}"))
    }

    /// Validate a full unit name with systemd's rules; templates (`foo@.service`) are refused
    /// because only instances can be loaded.
    pub fn parse(s: &str) -> Result<Self, String> {
        check(s, false).map(|()| UnitName(s.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The type suffix (`service`).
    pub fn unit_type(&self) -> &str {
        self.0.rsplit_once('.').map(|(_, t)| t).unwrap_or("")
    }

    /// For an instance `foo@bar.service`, the template `foo@.service`.
    pub fn template(&self) -> Option<String> {
        let (stem, ty) = self.0.rsplit_once('.')?;
        let (prefix, instance) = stem.split_once('@')?;
        (!instance.is_empty()).then(|| format!("{prefix}@.{ty}"))
    }
}

/// One of docker's own units (docker.service, early-docker.service, docker.socket, ...): the
/// ones whose sandboxes live under /run/docker/netns and whose restart stops containers.
pub fn is_docker(unit: &str) -> bool {
    unit.contains("docker")
}

/// Validate `name` (template names allowed when `allow_template`).
pub fn check(name: &str, allow_template: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > UNIT_NAME_MAX {
        return Err(format!("longer than {UNIT_NAME_MAX} characters"));
    }
    if name.contains('/') {
        return Err("contains '/'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !VALID_CHARS.contains(*c) && *c != '@')
    {
        return Err(format!("invalid character {c:?}"));
    }
    let Some((stem, ty)) = name.rsplit_once('.') else {
        return Err("no type suffix such as .service".into());
    };
    if !UNIT_TYPES.contains(&ty) {
        return Err(format!("unknown unit type '.{ty}'"));
    }
    match stem.split_once('@') {
        None => {
            if stem.is_empty() {
                return Err("empty name before the type suffix".into());
            }
        }
        Some((prefix, instance)) => {
            if prefix.is_empty() {
                return Err("empty prefix before '@'".into());
            }
            if instance.is_empty() && !allow_template {
                return Err("a template needs an instance name (foo@bar.service)".into());
            }
        }
    }
    Ok(())
}

/// Prefix drop-in names for `name` in systemd's order (`unit_file_find_dirs()`, v239+):
/// `foo-bar-baz.service` gives `foo-bar-.service`, then `foo-.service`.
pub fn prefix_names(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some((stem, ty)) = name.rsplit_once('.') else {
        return out;
    };
    let mut prefix = stem.split_once('@').map_or(stem, |(p, _)| p).to_string();
    while let Some(p) = dash_prefix(&prefix) {
        out.push(format!("{p}.{ty}"));
        prefix = p;
    }
    out
}

/// The next shorter dash prefix, as `unit_file_find_dirs()` computes it: `foo-bar-baz` gives
/// `foo-bar-`, `foo-bar-` gives `foo-`; None when there is none.
pub fn dash_prefix(prefix: &str) -> Option<String> {
    let mut p = prefix.to_string();
    let mut chopped = false;
    loop {
        let dash = p.rfind('-')?;
        if dash == 0 {
            return None;
        }
        if dash + 1 != p.len() || chopped {
            p.truncate(dash + 1);
            return Some(p);
        }
        // A trailing dash is chopped off once, then the search goes on.
        p.truncate(dash);
        chopped = true;
    }
}

/// D-Bus object path of a unit (`bus_label_escape()`): bytes outside `[A-Za-z0-9]` become `_xx`.
pub fn object_path(name: &str) -> String {
    let mut s = String::from("/org/freedesktop/systemd1/unit/");
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
            s.push(b as char);
        } else {
            s.push_str(&format!("_{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_name_means_service() {
        assert_eq!(
            UnitName::from_user("docker").unwrap().as_str(),
            "docker.service"
        );
        assert_eq!(
            UnitName::from_user("docker.socket").unwrap().as_str(),
            "docker.socket"
        );
    }

    #[test]
    fn invalid_names_are_refused_with_reason() {
        for bad in [
            "",
            "a/b.service",
            "bad name.service",
            "x.bogus",
            "@x.service",
            "foo@.service",
            "ä.service",
            ".service",
        ] {
            assert!(UnitName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(UnitName::parse(&format!("{}.service", "a".repeat(250))).is_err());
        assert!(UnitName::parse(&format!("{}.service", "a".repeat(247))).is_ok());
    }

    #[test]
    fn instance_has_template() {
        let n = UnitName::parse("getty@tty1.service").unwrap();
        assert_eq!(n.template().as_deref(), Some("getty@.service"));
        assert_eq!(UnitName::parse("docker.service").unwrap().template(), None);
    }

    #[test]
    fn prefix_dirs_in_systemd_order() {
        assert_eq!(
            prefix_names("foo-bar-baz.service"),
            ["foo-bar-.service", "foo-.service"]
        );
        assert_eq!(prefix_names("early-docker.service"), ["early-.service"]);
        assert_eq!(prefix_names("docker.service"), Vec::<String>::new());
        assert_eq!(prefix_names("-foo.service"), Vec::<String>::new());
        assert_eq!(prefix_names("foo-bar@x-y.service"), ["foo-.service"]);
    }

    #[test]
    fn object_path_escapes_like_bus_label_escape() {
        assert_eq!(
            object_path("docker.service"),
            "/org/freedesktop/systemd1/unit/docker_2eservice"
        );
        assert_eq!(
            object_path("tpl@bar.service"),
            "/org/freedesktop/systemd1/unit/tpl_40bar_2eservice"
        );
        assert_eq!(
            object_path("0foo.service"),
            "/org/freedesktop/systemd1/unit/_30foo_2eservice"
        );
    }
}
