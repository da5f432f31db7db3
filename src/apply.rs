//! Apply: atomic writes inside the root, never through a symlink, never under /usr.
//!
//! Every write is a hidden temp file in the target's directory (systemd skips dot files),
//! mode set explicitly, fsync, rename over the target, fsync of the directory. Directories on
//! the way are opened one component at a time with `O_NOFOLLOW`: a planted symlink is an error.

use crate::root::{basename, parent, Root};
use anyhow::{anyhow, bail, Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Names of dropfix's temporary files and directories start with this. systemd skips dot files,
/// and anything left by a killed dropfix is swept by the next one (see [`Writer::sweep`]).
pub const TMP_PREFIX: &str = ".#dropfix.";

/// A fresh hidden name for a temporary next to `name`, within NAME_MAX.
fn tmp_name(name: &str) -> String {
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{TMP_PREFIX}{}.{}.{}",
        &name[..end],
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `data` to a hidden temp file in `dir`, mode set explicitly, fsync, rename to `name`.
/// The caller fsyncs `dir`.
fn put_file(dir: &OwnedFd, name: &str, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let tmp = tmp_name(name);
    let result = (|| -> Result<()> {
        let fd = rfs::openat(
            dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .with_context(|| format!("cannot create a temporary file in {}", parent(path)))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(mode))
            .with_context(|| format!("cannot chmod {path}"))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data)
            .with_context(|| format!("cannot write {path}"))?;
        rfs::fsync(f.as_fd()).with_context(|| format!("cannot sync {path}"))?;
        drop(f);
        rfs::renameat(dir, tmp.as_str(), dir, name)
            .with_context(|| format!("cannot rename into {path}"))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rfs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Atomically replace the report file `path` on the machine dropfix runs on (not an override:
/// any directory, outside `--root`): a hidden temp file beside it, fsync, rename, fsync of the
/// directory. Readers such as node_exporter see the old file or the new one, never a part.
pub fn write_report(path: &std::path::Path, data: &[u8], mode: u32) -> Result<()> {
    let shown = path.display().to_string();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("--output {shown}: not a file name"))?;
    let dir_path = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let dir = rfs::open(
        dir_path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("--output {shown}: cannot open {}", dir_path.display()))?;
    put_file(&dir, name, &shown, data, mode).with_context(|| format!("--output {shown}"))?;
    rfs::fsync(&dir)
        .with_context(|| format!("--output {shown}: cannot sync {}", dir_path.display()))
}

/// Remove `name` in `dir` and, if it is a directory, everything in it; no symlink followed.
fn remove_all_at(dir: &OwnedFd, name: &CStr, depth: usize) -> Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sub = match rfs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
            return match rfs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(anyhow!(e)),
            }
        }
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(anyhow!(e)),
    };
    if depth > 16 {
        bail!("{name:?}: nested too deep");
    }
    for n in names(&sub)? {
        remove_all_at(&sub, &n, depth + 1)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(anyhow!(e)),
    }
}

/// The names in a directory, without `.` and `..`.
fn names(dir: &OwnedFd) -> Result<Vec<CString>> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

/// What is at a path, without following a final symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Nothing.
    Absent,
    /// A regular file with its permission bits and bytes.
    File {
        /// Permission bits.
        mode: u32,
        /// Content.
        data: Vec<u8>,
    },
    /// A symlink and its target.
    Symlink(String),
    /// A directory, with its permission bits.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// Something dropfix never touches (device, socket, ...).
    Other,
}

/// Writes inside one root.
pub struct Writer<'a> {
    root: &'a Root,
}

fn allowed(path: &str) -> bool {
    let ok_prefix = ["/etc/", "/var/lib/dropfix", "/run/"];
    ok_prefix.iter().any(|p| path.starts_with(p)) && !path.split('/').any(|c| c == "..")
}

impl<'a> Writer<'a> {
    /// A writer for `root`.
    pub fn new(root: &'a Root) -> Self {
        Writer { root }
    }

    fn open_root(&self) -> Result<OwnedFd> {
        rfs::open(
            self.root.host_root(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open root {}", self.root.host_root().display()))
    }

    /// Open an in-root directory without following symlinks; create missing components
    /// (0755) when `create`, returning the ones it made.
    pub fn open_dir(&self, dir: &str, create: bool) -> Result<(Option<OwnedFd>, Vec<String>)> {
        let mut fd = self.open_root()?;
        let mut here = String::new();
        let mut made = Vec::new();
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            here.push('/');
            here.push_str(comp);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = match rfs::openat(&fd, comp, flags, Mode::empty()) {
                Ok(f) => f,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(anyhow!(e)).with_context(|| format!("cannot create {here}"))
                        }
                    }
                    made.push(here.clone());
                    rfs::fsync(&fd).with_context(|| format!("cannot sync {}", parent(&here)))?;
                    rfs::openat(&fd, comp, flags, Mode::empty())
                        .with_context(|| format!("cannot open {here}"))?
                }
                Err(Errno::NOENT) => return Ok((None, made)),
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    bail!("refusing to write through {here}: it is a symlink or not a directory")
                }
                Err(e) => return Err(anyhow!(e)).with_context(|| format!("cannot open {here}")),
            };
            fd = next;
        }
        Ok((Some(fd), made))
    }

    /// What is at `path` now (no symlink followed anywhere).
    pub fn current(&self, path: &str) -> Result<Current> {
        let (Some(dir), _) = self.open_dir(parent(path), false)? else {
            return Ok(Current::Absent);
        };
        let name = basename(path);
        let st = match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(Current::Absent),
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("cannot inspect {path}")),
        };
        let ft = rfs::FileType::from_raw_mode(st.st_mode);
        match ft {
            rfs::FileType::Symlink => {
                let t = rfs::readlinkat(&dir, name, Vec::new())
                    .with_context(|| format!("cannot read link {path}"))?;
                Ok(Current::Symlink(t.to_string_lossy().into_owned()))
            }
            rfs::FileType::RegularFile => {
                let fd = rfs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("cannot open {path}"))?;
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data)
                    .with_context(|| format!("cannot read {path}"))?;
                Ok(Current::File {
                    mode: st.st_mode & 0o7777,
                    data,
                })
            }
            rfs::FileType::Directory => Ok(Current::Dir {
                mode: st.st_mode & 0o7777,
            }),
            _ => Ok(Current::Other),
        }
    }

    /// Create a directory with `mode` (its parent must exist).
    pub fn mkdir(&self, path: &str, mode: u32) -> Result<()> {
        if !allowed(path) {
            bail!("refusing to create {path}");
        }
        let (Some(dir), _) = self.open_dir(parent(path), false)? else {
            bail!("cannot create {path}: {} is missing", parent(path));
        };
        match rfs::mkdirat(&dir, basename(path), Mode::from_raw_mode(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("cannot create {path}")),
        }
        rfs::fsync(&dir).with_context(|| format!("cannot sync {}", parent(path)))?;
        Ok(())
    }

    /// Atomically make `path` a regular file with `data` and `mode`; returns created dirs.
    pub fn write(&self, path: &str, data: &[u8], mode: u32) -> Result<Vec<String>> {
        if !allowed(path) {
            bail!("refusing to write {path}: dropfix writes only overrides under /etc and its own state");
        }
        let (dir, made) = self.open_dir(parent(path), true)?;
        let dir = dir.ok_or_else(|| anyhow!("cannot create {}", parent(path)))?;
        let name = basename(path);
        if let Ok(st) = rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                bail!("cannot write {path}: a directory is in the way");
            }
        }
        put_file(&dir, name, path, data, mode)?;
        rfs::fsync(&dir).with_context(|| format!("cannot sync {}", parent(path)))?;
        Ok(made)
    }

    /// Atomically make `path` a symlink to `target` (restoring what dropfix replaced).
    pub fn symlink(&self, path: &str, target: &str) -> Result<()> {
        if !allowed(path) {
            bail!("refusing to write {path}");
        }
        let (dir, _) = self.open_dir(parent(path), true)?;
        let dir = dir.ok_or_else(|| anyhow!("cannot create {}", parent(path)))?;
        let name = basename(path);
        let tmp = tmp_name(name);
        let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        rfs::symlinkat(target, &dir, tmp.as_str())
            .with_context(|| format!("cannot create link {path}"))?;
        if let Err(e) = rfs::renameat(&dir, tmp.as_str(), &dir, name) {
            let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            return Err(anyhow!(e)).with_context(|| format!("cannot rename into {path}"));
        }
        rfs::fsync(&dir).with_context(|| format!("cannot sync {}", parent(path)))?;
        Ok(())
    }

    /// Remove a file (not a directory); absent is fine.
    pub fn remove(&self, path: &str) -> Result<()> {
        if !allowed(path) {
            bail!("refusing to remove {path}");
        }
        let (Some(dir), _) = self.open_dir(parent(path), false)? else {
            return Ok(());
        };
        // Absent is done, even on a read-only file system (where unlink says EROFS first).
        if let Err(Errno::NOENT) = rfs::statat(&dir, basename(path), AtFlags::SYMLINK_NOFOLLOW) {
            return Ok(());
        }
        match rfs::unlinkat(&dir, basename(path), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("cannot remove {path}")),
        }
        rfs::fsync(&dir).with_context(|| format!("cannot sync {}", parent(path)))?;
        Ok(())
    }

    /// Remove a directory if it is empty; true when it is gone.
    pub fn rmdir_if_empty(&self, path: &str) -> Result<bool> {
        let (Some(dir), _) = self.open_dir(parent(path), false)? else {
            return Ok(true);
        };
        if let Err(Errno::NOENT) = rfs::statat(&dir, basename(path), AtFlags::SYMLINK_NOFOLLOW) {
            return Ok(true);
        }
        match rfs::unlinkat(&dir, basename(path), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {
                rfs::fsync(&dir).with_context(|| format!("cannot sync {}", parent(path)))?;
                Ok(true)
            }
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(anyhow!(e)).with_context(|| format!("cannot remove {path}")),
        }
    }

    /// Like [`Writer::write`], but when directories are missing on the way, the file is
    /// written inside a hidden copy of them that is renamed into place last: the directories
    /// never exist without the file. Returns the directories created, outermost first.
    pub fn write_in_new_dirs(&self, path: &str, data: &[u8], mode: u32) -> Result<Vec<String>> {
        let missing = self.missing_dirs(path)?;
        let Some(top) = missing.first() else {
            return self.write(path, data, mode);
        };
        if !allowed(path) {
            bail!("refusing to write {path}: dropfix writes only overrides under /etc and its own state");
        }
        let (Some(base), _) = self.open_dir(parent(top), false)? else {
            bail!("cannot create {top}: {} is missing", parent(top));
        };
        let tmp = tmp_name(basename(top));
        let result = (|| -> Result<()> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mut chain = Vec::new();
            let mut at: Option<OwnedFd> = None;
            for (i, d) in missing.iter().enumerate() {
                let name = if i == 0 { tmp.as_str() } else { basename(d) };
                let parent_fd = at.as_ref().unwrap_or(&base);
                rfs::mkdirat(parent_fd, name, Mode::from_raw_mode(0o755))
                    .with_context(|| format!("cannot create {d}"))?;
                let fd = rfs::openat(parent_fd, name, flags, Mode::empty())
                    .with_context(|| format!("cannot open {d}"))?;
                if let Some(prev) = at.take() {
                    chain.push(prev);
                }
                at = Some(fd);
            }
            let last = at.as_ref().unwrap_or(&base);
            put_file(last, basename(path), path, data, mode)?;
            rfs::fsync(last).with_context(|| format!("cannot sync {}", parent(path)))?;
            for fd in chain.iter().rev() {
                rfs::fsync(fd).context("cannot sync a new directory")?;
            }
            rfs::renameat_with(
                &base,
                tmp.as_str(),
                &base,
                basename(top),
                rfs::RenameFlags::NOREPLACE,
            )
            .with_context(|| format!("cannot rename into {top}"))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = remove_all_at(&base, &CString::new(tmp).unwrap_or_default(), 0);
            return Err(e);
        }
        rfs::fsync(&base).with_context(|| format!("cannot sync {}", parent(top)))?;
        Ok(missing)
    }

    /// Take `dir` and everything in it away: renamed to a hidden name first (one atomic step
    /// for systemd and for a later dropfix), then deleted. No symlink is followed.
    pub fn remove_tree(&self, dir: &str) -> Result<()> {
        // Only dropfix's state directory, or the parents of it that dropfix created.
        let state = "/var/lib/dropfix";
        if !(dir == state
            || dir.starts_with("/var/lib/dropfix/")
            || state.starts_with(&format!("{dir}/")))
            || dir.split('/').any(|c| c == "..")
        {
            bail!("refusing to remove {dir}");
        }
        let (Some(base), _) = self.open_dir(parent(dir), false)? else {
            return Ok(());
        };
        let tmp = tmp_name(basename(dir));
        match rfs::renameat(&base, basename(dir), &base, tmp.as_str()) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(anyhow!(e)).with_context(|| format!("cannot remove {dir}")),
        }
        rfs::fsync(&base).with_context(|| format!("cannot sync {}", parent(dir)))?;
        let c = CString::new(tmp).map_err(|_| anyhow!("{dir}: bad name"))?;
        remove_all_at(&base, &c, 0).with_context(|| format!("cannot remove {dir}"))?;
        rfs::fsync(&base).with_context(|| format!("cannot sync {}", parent(dir)))?;
        Ok(())
    }

    /// Delete what a killed dropfix left in `dir`: hidden `.#dropfix.*` temp files and
    /// directories. Callers hold the [`crate::lock::Lock`], so none of them is in use.
    pub fn sweep(&self, dir: &str) -> Result<()> {
        let (Some(fd), _) = self.open_dir(dir, false)? else {
            return Ok(());
        };
        let mut any = false;
        for n in names(&fd).with_context(|| format!("cannot list {dir}"))? {
            if n.to_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                remove_all_at(&fd, &n, 0)
                    .with_context(|| format!("cannot remove {dir}/{}", n.to_string_lossy()))?;
                any = true;
            }
        }
        if any {
            rfs::fsync(&fd).with_context(|| format!("cannot sync {dir}"))?;
        }
        Ok(())
    }

    /// Names in an in-root directory (empty when missing); no symlink followed.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let (Some(fd), _) = self.open_dir(dir, false)? else {
            return Ok(Vec::new());
        };
        Ok(names(&fd)
            .with_context(|| format!("cannot list {dir}"))?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    /// The directories `write(path)` would create, outermost first.
    pub fn missing_dirs(&self, path: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut dir = parent(path).to_string();
        while dir != "/" {
            match self.open_dir(&dir, false)? {
                (Some(_), _) => break,
                (None, _) => {
                    out.push(dir.clone());
                    dir = parent(&dir).to_string();
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn write_creates_dirs_with_0755_and_file_with_0644_and_no_temp_left() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        let w = Writer::new(&root);
        let made = w
            .write("/etc/systemd/system/x.d/a.conf", b"hi", 0o644)
            .unwrap();
        assert_eq!(
            made,
            [
                "/etc",
                "/etc/systemd",
                "/etc/systemd/system",
                "/etc/systemd/system/x.d"
            ]
        );
        let p = t.path().join("etc/systemd/system/x.d/a.conf");
        assert_eq!(std::fs::read(&p).unwrap(), b"hi");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        let d = t.path().join("etc/systemd/system/x.d");
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }

    #[test]
    fn symlinked_directory_on_the_way_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/systemd/system")).unwrap();
        symlink(
            elsewhere.path(),
            t.path().join("etc/systemd/system/docker.service.d"),
        )
        .unwrap();
        let root = Root::new(t.path()).unwrap();
        let e = Writer::new(&root)
            .write("/etc/systemd/system/docker.service.d/a.conf", b"x", 0o644)
            .unwrap_err();
        assert!(e.to_string().contains("refusing to write through"), "{e}");
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[test]
    fn symlink_at_the_target_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/systemd/system")).unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib")).unwrap();
        std::fs::write(t.path().join("usr/lib/vendor"), b"vendor").unwrap();
        symlink(
            "/usr/lib/vendor",
            t.path().join("etc/systemd/system/d.service"),
        )
        .unwrap();
        let root = Root::new(t.path()).unwrap();
        Writer::new(&root)
            .write("/etc/systemd/system/d.service", b"mine", 0o644)
            .unwrap();
        assert_eq!(
            std::fs::read(t.path().join("usr/lib/vendor")).unwrap(),
            b"vendor"
        );
        assert_eq!(
            std::fs::read(t.path().join("etc/systemd/system/d.service")).unwrap(),
            b"mine"
        );
    }

    #[test]
    fn usr_is_never_written() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path()).unwrap();
        assert!(Writer::new(&root)
            .write("/usr/lib/systemd/system/x", b"", 0o644)
            .is_err());
        assert!(Writer::new(&root)
            .write("/etc/../usr/x", b"", 0o644)
            .is_err());
    }
}
