//! The systemd version a root runs: given, asked over D-Bus, or read from the installed files.

use crate::root::{Entry, Root};
use anyhow::Result;

/// A known version and how it was learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Major version (252 for "252.39-1~deb12u2").
    pub major: u32,
    /// Where it came from, for a person ("/usr/lib/systemd/systemd", "--systemd-version").
    pub source: String,
}

/// Leading integer of a systemd version string: "252.39-1~deb12u2" -> 252, "231" -> 231.
pub fn parse_major(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits: String = s
        .strip_prefix('v')
        .unwrap_or(s)
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok().filter(|v| *v > 0)
}

/// Binaries whose text carries "systemd <version> running in ..." (PID 1's start-up banner).
const BINARIES: &[&str] = &["/usr/lib/systemd/systemd", "/lib/systemd/systemd"];
/// Directories holding `libsystemd-shared-<version>.so` (v235 and later).
const LIB_DIRS: &[&str] = &[
    "/usr/lib/systemd",
    "/usr/lib64/systemd",
    "/usr/lib/x86_64-linux-gnu/systemd",
    "/usr/lib/aarch64-linux-gnu/systemd",
];

/// Read the installed systemd's version from its own files, or None.
pub fn detect(root: &Root) -> Result<Option<Version>> {
    for b in BINARIES {
        if let Ok(Entry::File | Entry::Symlink(_)) = root.entry(b) {
            if let Ok(data) = root.read(b) {
                if let Some(major) = banner_version(&data) {
                    return Ok(Some(Version {
                        major,
                        source: b.to_string(),
                    }));
                }
            }
        }
    }
    for d in LIB_DIRS {
        for name in root.list_dir(d).unwrap_or_default() {
            if let Some(v) = name
                .strip_prefix("libsystemd-shared-")
                .and_then(|r| r.strip_suffix(".so"))
                .and_then(parse_major)
            {
                return Ok(Some(Version {
                    major: v,
                    source: format!("{d}/{name}"),
                }));
            }
        }
    }
    if let Ok(status) = root.read("/var/lib/dpkg/status") {
        if let Some(v) = dpkg_version(&String::from_utf8_lossy(&status)) {
            return Ok(Some(Version {
                major: v,
                source: "/var/lib/dpkg/status".into(),
            }));
        }
    }
    Ok(None)
}

/// Find "systemd <digits>" followed, within the same string, by " running in".
fn banner_version(data: &[u8]) -> Option<u32> {
    const NEEDLE: &[u8] = b"systemd ";
    const TAIL: &[u8] = b" running in";
    let mut i = 0;
    while let Some(pos) = find(&data[i..], NEEDLE) {
        let start = i + pos + NEEDLE.len();
        let end = data[start..]
            .iter()
            .position(|&b| b == 0 || b == b'\n')
            .map_or(data.len(), |p| start + p);
        let s = &data[start..end];
        if s.first().is_some_and(u8::is_ascii_digit) && find(s, TAIL).is_some() {
            if let Some(v) = std::str::from_utf8(s).ok().and_then(parse_major) {
                return Some(v);
            }
        }
        i = start;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dpkg_version(status: &str) -> Option<u32> {
    for para in status.split("\n\n") {
        let mut is_systemd = false;
        let mut version = None;
        for line in para.lines() {
            if line == "Package: systemd" {
                is_systemd = true;
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = parse_major(v.split(':').next_back().unwrap_or(v));
            }
        }
        if is_systemd {
            return version;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_leading_integer() {
        assert_eq!(parse_major("252.39-1~deb12u2"), Some(252));
        assert_eq!(parse_major("231"), Some(231));
        assert_eq!(parse_major("v256.5"), Some(256));
        assert_eq!(parse_major("239 (239-58.el8_6.8)"), Some(239));
        assert_eq!(parse_major("unknown"), None);
        assert_eq!(parse_major(""), None);
    }

    #[test]
    fn banner_is_found_in_binary_text() {
        let bin = b"\x7fELF\0\0systemd-journald\0systemd 231 running in %ssystem mode. (+PAM)\0";
        assert_eq!(banner_version(bin), Some(231));
        let bin = b"systemd 252.39-1~deb12u2 running in %ssystem mode";
        assert_eq!(banner_version(bin), Some(252));
        assert_eq!(banner_version(b"systemd 252 is here"), None);
    }

    #[test]
    fn dpkg_status_names_systemd() {
        let s = "Package: systemd-sysv\nVersion: 9\n\nPackage: systemd\nStatus: install ok installed\nVersion: 252.38-1~deb12u1\n";
        assert_eq!(dpkg_version(s), Some(252));
    }
}
