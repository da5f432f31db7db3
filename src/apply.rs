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
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

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
        let tmp = format!(
            ".#dropfix.{name}.{}.{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let result = (|| -> Result<()> {
            let fd = rfs::openat(
                &dir,
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
            rfs::renameat(&dir, tmp.as_str(), &dir, name)
                .with_context(|| format!("cannot rename into {path}"))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = rfs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            return Err(e);
        }
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
        let tmp = format!(".#dropfix.{name}.{}.l", std::process::id());
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
        match rfs::unlinkat(&dir, basename(path), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {
                rfs::fsync(&dir).with_context(|| format!("cannot sync {}", parent(path)))?;
                Ok(true)
            }
            Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(anyhow!(e)).with_context(|| format!("cannot remove {path}")),
        }
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
