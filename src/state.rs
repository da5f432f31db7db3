//! dropfix's own state: what it replaced (kept byte for byte) and what it wrote, so `revert`
//! restores the tree exactly and never removes a file dropfix did not generate.
//!
//! Order of writes: the manifest (on the first run created together with its directories, in
//! one rename), then the backups, then the overrides. A crash at any point leaves either nothing
//! done or a manifest that describes everything that may have been done; a record whose file
//! still holds the original is dropped by `revert`, and the next run sweeps the hidden temp
//! files a killed run left. `revert` takes the state directory away in one rename, last.

use crate::apply::{Current, Writer};
use crate::plan::{Action, FileChange, Strategy};
use crate::root::parent;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// dropfix's state directory inside the root.
pub const STATE_DIR: &str = "/var/lib/dropfix";
const MANIFEST: &str = "/var/lib/dropfix/state.json";
const BACKUP_DIR: &str = "/var/lib/dropfix/backup";

/// What was at a path before dropfix first touched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Original {
    /// Nothing: dropfix created the file.
    Absent,
    /// A regular file, kept under the backup directory.
    File {
        /// Permission bits.
        mode: u32,
        /// Backup file name under the backup directory.
        backup: String,
    },
    /// A symlink.
    Symlink {
        /// Its target.
        target: String,
    },
    /// An empty directory (replaced by a symlink).
    Dir {
        /// Permission bits.
        mode: u32,
    },
}

/// One path dropfix changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// In-root path.
    pub path: String,
    /// The unit it was changed for.
    pub unit: String,
    /// What was there first.
    pub original: Original,
    /// What dropfix last left there (None: dropfix removed it). Content that is not UTF-8 (a
    /// full copy keeps a vendor file's bytes) is recorded lossily; see [`is_written`].
    pub written: Option<String>,
    /// `written` is a symlink target, not file content.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
}

/// Who picked the override's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chosen {
    /// dropfix, for the systemd version it planned for: it may change its mind when systemd
    /// changes.
    Auto,
    /// `--strategy`: kept as it is until `--strategy` says otherwise.
    Forced,
    /// A copy an older dropfix made, which did not record who chose: kept as a copy.
    Unknown,
}

/// What one of dropfix's copies was made from: the vendor file and its text at the time, so
/// a vendor update (the vendor file differs from `base`) is told from an administrator's edit
/// (the copy differs from what dropfix makes of `base`), and both are merged three ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// In-root path of the copy.
    pub path: String,
    /// The unit it is for.
    pub unit: String,
    /// The vendor file it copies.
    pub source: String,
    /// The vendor file's text when the copy was last made from it.
    pub base: String,
    /// The override's form.
    pub strategy: Strategy,
    /// Who picked that form.
    pub chosen: Chosen,
    /// The systemd version planned for (None: unknown).
    pub systemd: Option<u32>,
}

/// Format of the manifest dropfix writes. 1: records and directories; 2: adds `copies`
/// (read by version 1 readers too, which ignore it; a version 1 manifest loads with none).
pub const MANIFEST_VERSION: u32 = 2;

/// Everything dropfix changed in a root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Changed paths, in the order they were first changed.
    pub records: Vec<Record>,
    /// Directories dropfix created (overrides' and its own), outermost first.
    pub created_dirs: Vec<String>,
    /// What each of dropfix's copies was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<Provenance>,
}

impl Manifest {
    /// Load the manifest, or an empty one when dropfix never wrote here.
    pub fn load(w: &Writer) -> Result<Option<Manifest>> {
        match w.current(MANIFEST)? {
            Current::Absent => Ok(None),
            Current::File { data, .. } => {
                let m: Manifest = serde_json::from_slice(&data)
                    .with_context(|| format!("{MANIFEST}: not a dropfix state file"))?;
                Ok(Some(m))
            }
            _ => bail!("{MANIFEST}: not a regular file"),
        }
    }

    /// The record of the copy at `path`, if dropfix made it.
    pub fn provenance(&self, path: &str) -> Option<&Provenance> {
        self.copies.iter().find(|p| p.path == path)
    }

    /// What dropfix last wrote at `path`, if it wrote a file there and did not replace
    /// someone else's file to do it.
    pub fn created(&self, path: &str) -> Option<&str> {
        self.records
            .iter()
            .find(|r| r.path == path && r.original == Original::Absent && !r.link)
            .and_then(|r| r.written.as_deref())
    }

    fn save(&self, w: &Writer) -> Result<()> {
        let mut data = serde_json::to_vec_pretty(self).context("encoding state")?;
        data.push(b'\n');
        // The state directory never exists without its manifest.
        w.write_in_new_dirs(MANIFEST, &data, 0o600)?;
        Ok(())
    }

    fn note_dirs(&mut self, dirs: Vec<String>) {
        for d in dirs {
            if !self.created_dirs.contains(&d) {
                self.created_dirs.push(d);
            }
        }
    }
}

/// The state directory and the parents dropfix may have had to create for it.
const STATE_CHAIN: &[&str] = &["/var", "/var/lib", STATE_DIR];

/// Delete the hidden temp files a killed dropfix left next to `paths` and in its state.
fn sweep<'a>(w: &Writer, paths: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut dirs: Vec<&str> = vec!["/", BACKUP_DIR];
    dirs.extend(STATE_CHAIN);
    dirs.extend(paths.map(parent));
    dirs.sort_unstable();
    dirs.dedup();
    for d in dirs {
        w.sweep(d)?;
    }
    Ok(())
}

/// Remove the manifest and the directories dropfix created (`created`, outermost first):
/// others' first, then the state directory with the parents dropfix made for it in one step,
/// so a crash leaves either the manifest or none of dropfix's state.
fn remove_state(w: &Writer, created: &[String]) -> Result<()> {
    for d in created.iter().rev() {
        if !STATE_CHAIN.contains(&d.as_str()) && !d.starts_with(&format!("{STATE_DIR}/")) {
            w.rmdir_if_empty(d)?;
        }
    }
    w.rmdir_if_empty(BACKUP_DIR)?;
    // The outermost created directory whose subtree is nothing but the chain and the manifest.
    let mut top = None;
    let mut only = "state.json";
    for d in STATE_CHAIN.iter().rev() {
        if !created.iter().any(|c| c == d) || w.list(d)? != [only] {
            break;
        }
        top = Some(*d);
        only = crate::root::basename(d);
    }
    match top {
        Some(t) => w.remove_tree(t),
        None => w.remove(MANIFEST),
    }
}

/// Does `cur` hold what was there before dropfix, i.e. nothing of dropfix's is left there?
fn holds_original(w: &Writer, r: &Record, cur: &Current) -> Result<bool> {
    Ok(match (&r.original, cur) {
        (Original::Absent, Current::Absent) => true,
        (Original::File { mode, backup }, Current::File { mode: m, data }) => {
            match w.current(&format!("{BACKUP_DIR}/{backup}"))? {
                Current::File { data: b, .. } => mode == m && b == *data,
                _ => false,
            }
        }
        (Original::Symlink { target }, Current::Symlink(t)) => target == t,
        (Original::Dir { mode }, Current::Dir { mode: m }) => mode == m,
        _ => false,
    })
}

fn backup_name(path: &str) -> String {
    path.trim_start_matches('/')
        .replace('%', "%25")
        .replace('/', "%2F")
}

/// What a root looked like before one `apply_changes`, to put it back if a restart fails.
#[derive(Debug, Clone)]
pub struct Applied {
    manifest: Option<Manifest>,
    before: Vec<(String, Current)>,
}

impl Applied {
    /// Put every changed path and the manifest back as they were before this apply.
    pub fn rollback(&self, w: &Writer) -> Result<()> {
        for (path, cur) in self.before.iter().rev() {
            match cur {
                Current::Absent => w.remove(path)?,
                Current::File { mode, data } => {
                    w.write(path, data, *mode)?;
                }
                Current::Symlink(t) => w.symlink(path, t)?,
                Current::Dir { mode } => {
                    w.remove(path)?;
                    w.mkdir(path, *mode)?;
                }
                Current::Other => {}
            }
        }
        let now = Manifest::load(w)?;
        let keep: Vec<&Record> = self
            .manifest
            .iter()
            .flat_map(|m| m.records.iter())
            .collect();
        for r in now.iter().flat_map(|m| m.records.iter()) {
            if let Original::File { backup, .. } = &r.original {
                if !keep
                    .iter()
                    .any(|k| matches!(&k.original, Original::File { backup: b, .. } if b == backup))
                {
                    w.remove(&format!("{BACKUP_DIR}/{backup}"))?;
                }
            }
        }
        match &self.manifest {
            Some(m) => m.save(w)?,
            None => {
                let created: Vec<String> = now.map(|m| m.created_dirs).unwrap_or_default();
                remove_state(w, &created)?;
            }
        }
        Ok(())
    }
}

/// Apply planned changes, each tagged with its unit, recording originals first, and what the
/// copies among them were made from (`copies`; a changed path without one loses its record).
/// All or nothing: on an error the files this call changed are put back.
pub fn apply_changes(
    w: &Writer,
    changes: &[(&str, &FileChange)],
    copies: &[Provenance],
) -> Result<Applied> {
    let loaded = Manifest::load(w)?;
    let mut before = Vec::new();
    for (_, c) in changes {
        before.push((c.path.clone(), w.current(&c.path)?));
    }
    let applied = Applied {
        manifest: loaded.clone(),
        before,
    };
    if changes.is_empty() {
        return Ok(applied);
    }
    sweep(w, changes.iter().map(|(_, c)| c.path.as_str()))?;
    let mut m = loaded.unwrap_or_default();
    m.version = m.version.max(MANIFEST_VERSION);
    for (_, c) in changes {
        m.copies.retain(|p| p.path != c.path);
    }
    m.copies.extend(copies.iter().cloned());
    // Directories that will be created: known before anything is written.
    let mut dirs = w.missing_dirs(MANIFEST)?;
    dirs.extend(w.missing_dirs(&format!("{BACKUP_DIR}/x"))?);
    for (_, c) in changes {
        dirs.extend(w.missing_dirs(&c.path)?);
    }
    m.note_dirs(dirs);
    // Backups are written once the manifest names them, before any override.
    let mut backups: Vec<(String, Vec<u8>)> = Vec::new();
    for (unit, c) in changes {
        let written = match (&c.action, &c.link) {
            (Action::Remove, _) => None,
            (_, Some(target)) => Some(target.clone()),
            _ => Some(String::from_utf8_lossy(&c.new).into_owned()),
        };
        if let Some(r) = m.records.iter_mut().find(|r| r.path == c.path) {
            // A run killed between the manifest and its backups: the file is still the original.
            if let (Original::File { backup, .. }, Current::File { data, .. }) =
                (&r.original, w.current(&c.path)?)
            {
                let ours = r.written.as_deref().is_some_and(|w| is_written(w, &data));
                let path = format!("{BACKUP_DIR}/{backup}");
                if !ours && w.current(&path)? == Current::Absent {
                    backups.push((path, data));
                }
            }
            r.written = written;
            r.link = c.link.is_some();
            continue;
        }
        let original = match w.current(&c.path)? {
            Current::Absent => Original::Absent,
            Current::File { mode, data } => {
                let backup = backup_name(&c.path);
                backups.push((format!("{BACKUP_DIR}/{backup}"), data));
                Original::File { mode, backup }
            }
            Current::Symlink(target) => Original::Symlink { target },
            Current::Dir { mode } if c.link.is_some() => Original::Dir { mode },
            Current::Dir { .. } | Current::Other => bail!(
                "{}: not a regular file or symlink; dropfix will not replace it",
                c.path
            ),
        };
        m.records.push(Record {
            path: c.path.clone(),
            unit: unit.to_string(),
            original,
            written,
            link: c.link.is_some(),
        });
    }
    m.save(w)?;
    for (path, data) in &backups {
        w.write(path, data, 0o600)?;
    }
    for (_, c) in changes {
        let r = match (&c.action, &c.link) {
            (Action::Remove, _) => w.remove(&c.path),
            (_, Some(target)) => link_over(w, &c.path, target),
            _ => w.write(&c.path, &c.new, 0o644).map(|_| ()),
        };
        if let Err(e) = r {
            // Leave nothing half-done: put back what this run changed.
            if let Err(back) = applied.rollback(w) {
                return Err(anyhow::anyhow!(
                    "{e:#}; and putting the previous files back failed: {back:#}"
                ));
            }
            return Err(e);
        }
    }
    Ok(applied)
}

/// Does a file hold what dropfix recorded writing? Bytes that are not UTF-8 were recorded
/// lossily, so such a file is compared the same way.
pub fn is_written(recorded: &str, data: &[u8]) -> bool {
    data == recorded.as_bytes()
        || (std::str::from_utf8(data).is_err() && String::from_utf8_lossy(data) == recorded)
}

/// What revert does with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevertAction {
    /// dropfix created it: it goes.
    Remove,
    /// dropfix replaced it: the original comes back.
    Restore,
    /// Changed since dropfix wrote it: left alone.
    Skip,
}

impl RevertAction {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RevertAction::Remove => "remove",
            RevertAction::Restore => "restore",
            RevertAction::Skip => "skip",
        }
    }
}

/// What revert did for one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reverted {
    /// In-root path.
    pub path: String,
    /// Unit it belonged to.
    pub unit: String,
    /// What revert does with it.
    pub action: RevertAction,
    /// Why, when skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Content before and after, for the diff.
    #[serde(skip)]
    pub before: Vec<u8>,
    /// Content it gets back.
    #[serde(skip)]
    pub after: Vec<u8>,
}

/// Work out (and unless `dry_run`, do) the revert of `units` (all when empty).
pub fn revert(w: &Writer, units: &[String], dry_run: bool) -> Result<Vec<Reverted>> {
    let loaded = Manifest::load(w)?;
    if !dry_run {
        sweep(
            w,
            loaded
                .iter()
                .flat_map(|m| m.records.iter().map(|r| r.path.as_str())),
        )?;
    }
    let Some(mut m) = loaded else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut keep = Vec::new();
    for r in m.records.iter().rev() {
        if !units.is_empty() && !units.contains(&r.unit) {
            keep.push(r.clone());
            continue;
        }
        let cur = w.current(&r.path)?;
        // dropfix created and later removed it, and it is still gone: nothing to undo.
        if r.written.is_none() && r.original == Original::Absent && cur == Current::Absent {
            continue;
        }
        let ours = match (&r.written, &cur) {
            (Some(text), Current::File { data, .. }) => !r.link && is_written(text, data),
            (Some(text), Current::Symlink(t)) => r.link && t == text,
            (None, Current::Absent) => true,
            _ => false,
        };
        let before = match &cur {
            Current::File { data, .. } => data.clone(),
            Current::Symlink(t) => format!("symlink to {t}\n").into_bytes(),
            _ => Vec::new(),
        };
        // Never written (a killed run), or already put back (a killed revert): nothing to do.
        let backup_lost = matches!(&r.original, Original::File { backup, .. }
            if w.current(&format!("{BACKUP_DIR}/{backup}"))? == Current::Absent);
        if !ours && (backup_lost || holds_original(w, r, &cur)?) {
            continue;
        }
        if !ours {
            out.push(Reverted {
                path: r.path.clone(),
                unit: r.unit.clone(),
                action: RevertAction::Skip,
                reason: Some("changed since dropfix wrote it; left alone".into()),
                before: before.clone(),
                after: before,
            });
            continue;
        }
        let (action, after) = match &r.original {
            Original::Absent => (RevertAction::Remove, Vec::new()),
            Original::File { backup, .. } => {
                let data = match w.current(&format!("{BACKUP_DIR}/{backup}"))? {
                    Current::File { data, .. } => data,
                    _ => bail!(
                        "{}: backup {BACKUP_DIR}/{backup} is missing; nothing restored",
                        r.path
                    ),
                };
                (RevertAction::Restore, data)
            }
            Original::Symlink { target } => (
                RevertAction::Restore,
                format!("symlink to {target}\n").into_bytes(),
            ),
            Original::Dir { .. } => (RevertAction::Restore, Vec::new()),
        };
        if !dry_run {
            match &r.original {
                Original::Absent => w.remove(&r.path)?,
                Original::File { mode, .. } => {
                    w.write(&r.path, &after, *mode)?;
                }
                Original::Symlink { target } => w.symlink(&r.path, target)?,
                Original::Dir { mode } => {
                    w.remove(&r.path)?;
                    w.mkdir(&r.path, *mode)?;
                }
            }
        }
        out.push(Reverted {
            path: r.path.clone(),
            unit: r.unit.clone(),
            action,
            reason: None,
            before,
            after,
        });
    }
    if dry_run {
        return Ok(out);
    }
    keep.reverse();
    let skipped: Vec<String> = out
        .iter()
        .filter(|r| r.action == RevertAction::Skip)
        .map(|r| r.path.clone())
        .collect();
    // Keep records of skipped files: their backups are still the way back.
    let remaining: Vec<Record> = m
        .records
        .iter()
        .filter(|r| keep.contains(r) || skipped.contains(&r.path))
        .cloned()
        .collect();
    for r in &m.records {
        if !remaining.contains(r) {
            if let Original::File { backup, .. } = &r.original {
                w.remove(&format!("{BACKUP_DIR}/{backup}"))?;
            }
        }
    }
    if remaining.is_empty() {
        remove_state(w, &m.created_dirs)?;
    } else {
        m.copies.retain(|p| {
            remaining
                .iter()
                .any(|r| r.path == p.path && r.written.is_some())
        });
        m.records = remaining;
        m.save(w)?;
        // Directories emptied by this revert go; the rest stay recorded.
        let mut still = Vec::new();
        for d in m.created_dirs.iter().rev() {
            if !d.starts_with(STATE_DIR) && w.rmdir_if_empty(d)? {
                continue;
            }
            still.push(d.clone());
        }
        still.reverse();
        m.created_dirs = still;
        m.save(w)?;
    }
    Ok(out)
}

/// Make `path` a symlink to `target`, replacing an empty directory if one is there.
fn link_over(w: &Writer, path: &str, target: &str) -> Result<()> {
    if let Current::Dir { .. } = w.current(path)? {
        if !w.rmdir_if_empty(path)? {
            bail!("{path} is a directory that is not empty; dropfix leaves it alone");
        }
    }
    w.symlink(path, target)
}
