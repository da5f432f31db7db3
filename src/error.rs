//! Errors that know where they come from, so `--format json` can say which unit, file and line
//! an error is about without reading its message.

use serde::Serialize;
use std::fmt;

/// A file that cannot be used, at a line when one is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// In-root path.
    pub path: String,
    /// 1-based line, when one is to blame.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// A unit that cannot be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// Unit name.
    pub unit: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.unit, self.message)
    }
}

impl std::error::Error for UnitError {}

/// Context: this error happened while reading a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading(pub String);

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reading {}", self.0)
    }
}

/// `bail!` for a unit: an error that carries the unit's name.
pub fn unit(unit: impl Into<String>, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UnitError {
        unit: unit.into(),
        message: message.into(),
    })
}

/// An error already described: carried as it is (its unit, path and line kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported(pub ErrorReport);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Reported {}

/// An error for JSON: the whole message, and the unit, path and line where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// The one line also printed on stderr.
    pub message: String,
    /// The unit it is about.
    pub unit: Option<String>,
    /// The file it is about.
    pub path: Option<String>,
    /// The line in that file.
    pub line: Option<usize>,
    /// A three-way merge that conflicts: the text with conflict markers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
}

impl ErrorReport {
    /// From any error, with the typed facts found along its chain.
    pub fn from_error(e: &anyhow::Error) -> Self {
        if let Some(Reported(r)) = e.downcast_ref::<Reported>() {
            return r.clone();
        }
        let mut r = ErrorReport {
            message: format!("{e:#}"),
            unit: None,
            path: None,
            line: None,
            conflict: None,
        };
        if let Some(Reading(u)) = e.downcast_ref::<Reading>() {
            r.unit = Some(u.clone());
        }
        if let Some(crate::discover::CannotLoad(u)) =
            e.downcast_ref::<crate::discover::CannotLoad>()
        {
            r.unit.get_or_insert_with(|| u.clone());
        }
        for c in e.chain() {
            if let Some(f) = c.downcast_ref::<FileError>() {
                r.path.get_or_insert_with(|| f.path.clone());
                if r.line.is_none() {
                    r.line = f.line;
                }
            }
            if let Some(u) = c.downcast_ref::<UnitError>() {
                r.unit.get_or_insert_with(|| u.unit.clone());
            }
            if let Some(x) = c.downcast_ref::<crate::update::Conflict>() {
                r.unit.get_or_insert_with(|| x.unit.clone());
                r.path.get_or_insert_with(|| x.copy.clone());
                r.conflict = Some(x.text.clone());
            }
        }
        r
    }
    /// From a message alone.
    pub fn message(m: impl Into<String>) -> Self {
        ErrorReport {
            message: m.into(),
            unit: None,
            path: None,
            line: None,
            conflict: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn unit_path_and_line_come_from_the_chain_not_the_text() {
        let e: anyhow::Error = anyhow::Error::new(FileError {
            path: "/etc/systemd/system/docker.service.d/x.conf".into(),
            line: Some(3),
            message: "invalid section header".into(),
        });
        let e = Err::<(), _>(e)
            .context(Reading("docker.service".into()))
            .unwrap_err();
        let r = ErrorReport::from_error(&e);
        assert_eq!(r.unit.as_deref(), Some("docker.service"));
        assert_eq!(
            r.path.as_deref(),
            Some("/etc/systemd/system/docker.service.d/x.conf")
        );
        assert_eq!(r.line, Some(3));
        assert_eq!(
            r.message,
            "reading docker.service: /etc/systemd/system/docker.service.d/x.conf:3: invalid section header"
        );
        let r = ErrorReport::from_error(&unit("nosuch.service", "unit not found"));
        assert_eq!(r.unit.as_deref(), Some("nosuch.service"));
        assert_eq!(r.message, "nosuch.service: unit not found");
    }
}
