//! The root every path is relative to (`--root`, default `/`), and symlink resolution inside it.
//!
//! Paths are written as absolute paths inside the root (`/etc/systemd/system/docker.service`).
//! Symlinks are followed the way `chase(CHASE_PREFIX_ROOT)` does under `--root`: absolute targets
//! are taken relative to the root. A symlink whose `..` climbs above an image root is refused.

use anyhow::{bail, Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The most dropfix reads of one file: unit files are kilobytes; this bounds a hostile one.
pub const MAX_READ: u64 = 64 << 20;

/// systemd's `CHASE_MAX` on symlink hops.
const MAX_LINKS: usize = 32;

/// The tree dropfix reads and writes.
#[derive(Debug, Clone)]
pub struct Root {
    host: PathBuf,
    /// Directories already resolved by [`Root::entry`] and [`Root::read`]: a unit with 10,000
    /// drop-ins resolves their directory once, not 10,000 times (one lstat per component).
    dirs: RefCell<HashMap<String, String>>,
}

/// What a path inside the root turned out to be, without following its last component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Nothing there.
    Missing,
    /// A regular file (or anything that is not a directory or symlink).
    File,
    /// A directory.
    Dir,
    /// A symlink with its raw target.
    Symlink(PathBuf),
}

impl Root {
    /// Open a root directory. `/` is the running host.
    pub fn new(path: &Path) -> Result<Self> {
        let canon = fs::canonicalize(path)
            .with_context(|| format!("--root {}: cannot open", path.display()))?;
        // `/proc/<pid>/root` reads as "/" but the kernel walks it into that process's own
        // root (a container's): keep the path as given when its canonical form is another
        // directory, or a container's root would silently be the host's.
        let host = if same_dir(path, &canon) {
            canon
        } else {
            std::path::absolute(path)
                .with_context(|| format!("--root {}: cannot open", path.display()))?
        };
        if !host.is_dir() {
            bail!("--root {}: not a directory", path.display());
        }
        Ok(Root {
            host,
            dirs: RefCell::new(HashMap::new()),
        })
    }

    /// Whether this is the running system's own root.
    pub fn is_host(&self) -> bool {
        self.host == Path::new("/")
    }

    /// The root's path on the host.
    pub fn host_root(&self) -> &Path {
        &self.host
    }

    /// Host path of an in-root path, without resolving anything.
    pub fn host_path(&self, inner: &str) -> PathBuf {
        let rel = inner.trim_start_matches('/');
        if rel.is_empty() {
            self.host.clone()
        } else {
            self.host.join(rel)
        }
    }

    /// What sits at `inner`, not following a final symlink. Symlinks on the way are resolved
    /// inside the root: the kernel would take an absolute link to the host's own files.
    pub fn entry(&self, inner: &str) -> Result<Entry> {
        let dir = parent(inner);
        if dir == "/" {
            return self.entry_here(inner);
        }
        let real = self.resolve_dir(dir)?;
        self.entry_here(&join(&real, basename(inner)))
    }

    /// [`Root::resolve`] of a directory, remembered for the life of this handle.
    fn resolve_dir(&self, dir: &str) -> Result<String> {
        if let Some(r) = self.dirs.borrow().get(dir) {
            return Ok(r.clone());
        }
        let real = if dir == "/" {
            "/".to_string()
        } else {
            self.resolve(dir)?
        };
        self.dirs.borrow_mut().insert(dir.to_string(), real.clone());
        Ok(real)
    }

    /// [`Root::entry`] for a path whose directories are known to be real (already resolved).
    fn entry_here(&self, inner: &str) -> Result<Entry> {
        let host = self.host_path(inner);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = fs::read_link(&host).with_context(|| format!("reading link {inner}"))?;
                Ok(Entry::Symlink(t))
            }
            Ok(m) if m.is_dir() => Ok(Entry::Dir),
            Ok(_) => Ok(Entry::File),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                Ok(Entry::Missing)
            }
            Err(e) => Err(e).with_context(|| format!("cannot inspect {inner}")),
        }
    }

    /// Resolve every symlink in `inner` inside the root and return the in-root path it names.
    /// Components that do not exist are kept as they are.
    pub fn resolve(&self, inner: &str) -> Result<String> {
        let plain = inner.starts_with('/')
            && inner.len() > 1
            && !inner.ends_with('/')
            && !inner.contains("//")
            && !components(inner).iter().any(|c| c == "." || c == "..");
        if !plain {
            return self.resolve_from_top(inner, inner);
        }
        // The directory part comes from the cache; only the last component is looked at.
        let here = join(&self.resolve_dir(parent(inner))?, basename(inner));
        match self.entry_here(&here)? {
            Entry::Symlink(_) => self.resolve_from_top(&here, inner),
            _ => Ok(here),
        }
    }

    /// [`Root::resolve`] component by component from the top; errors name `shown`.
    fn resolve_from_top(&self, inner: &str, shown: &str) -> Result<String> {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = components(inner).into_iter().rev().collect();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    if done.pop().is_none() && !self.is_host() {
                        bail!(
                            "{shown}: a symlink climbs above the root {}",
                            self.host.display()
                        );
                    }
                    continue;
                }
                _ => {}
            }
            done.push(c);
            let here = format!("/{}", done.join("/"));
            if let Entry::Symlink(target) = self.entry_here(&here)? {
                hops += 1;
                if hops > MAX_LINKS {
                    bail!("{shown}: too many levels of symbolic links");
                }
                done.pop();
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in components(&t).into_iter().rev() {
                    todo.push(part);
                }
            }
        }
        Ok(format!("/{}", done.join("/")))
    }

    /// Read a file inside the root, following symlinks inside it.
    ///
    /// Only a regular file is read, and at most [`MAX_READ`] bytes of it: a FIFO planted as a
    /// drop-in would block the read forever, a device (`/dev/zero`) would never end.
    pub fn read(&self, inner: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let open = |real: &str, flags: rustix::fs::OFlags| {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(
                    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY | flags).bits()
                        as i32,
                )
                .open(self.host_path(real))
        };
        // The directories from the cache; a link at the end is followed inside the root.
        let here = join(&self.resolve_dir(parent(inner))?, basename(inner));
        let mut f = match open(&here, rustix::fs::OFlags::NOFOLLOW) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                open(&self.resolve(inner)?, rustix::fs::OFlags::empty())
            }
            r => r,
        }
        .with_context(|| format!("cannot read {inner}"))?;
        let m = f
            .metadata()
            .with_context(|| format!("cannot read {inner}"))?;
        if !m.is_file() {
            bail!("cannot read {inner}: not a regular file");
        }
        if m.len() > MAX_READ {
            bail!(
                "cannot read {inner}: {} bytes, more than the {} MiB dropfix reads",
                m.len(),
                MAX_READ >> 20
            );
        }
        // Read into a buffer sized from the stat above (read_to_end would stat again).
        let mut data = vec![0; m.len() as usize + 1];
        let mut n = 0;
        loop {
            if n == data.len() {
                if n as u64 > MAX_READ {
                    bail!("cannot read {inner}: it grew past {} MiB", MAX_READ >> 20);
                }
                data.resize(n * 2, 0);
            }
            match f.read(&mut data[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {inner}")),
            }
        }
        data.truncate(n);
        Ok(data)
    }

    /// Names in a directory inside the root (following symlinks to it); empty when missing.
    pub fn list_dir(&self, inner: &str) -> Result<Vec<String>> {
        Ok(self
            .list_dir_typed(inner)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// [`Root::list_dir`] with what each name is, from the directory entry itself (no stat):
    /// `None` for a symlink (its target needs a readlink) or where the file system does not say.
    pub fn list_dir_typed(&self, inner: &str) -> Result<Vec<(String, Option<Entry>)>> {
        let real = self.resolve_dir(inner)?;
        let rd = match fs::read_dir(self.host_path(&real)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot list {inner}")),
        };
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.with_context(|| format!("cannot list {inner}"))?;
            let kind = match ent.file_type() {
                Ok(t) if t.is_symlink() => None,
                Ok(t) if t.is_dir() => Some(Entry::Dir),
                Ok(_) => Some(Entry::File),
                Err(_) => None,
            };
            match ent.file_name().into_string() {
                Ok(n) => names.push((n, kind)),
                // systemd reads every *.conf in a drop-in directory, whatever its bytes
                // (conf_files_list()): skipping one would hide a MountFlags= it sets.
                Err(n)
                    if inner.ends_with(".d")
                        && n.as_encoded_bytes().ends_with(b".conf")
                        && !n.as_encoded_bytes().starts_with(b".") =>
                {
                    bail!(
                        "{inner}: drop-in {:?} has a name that is not UTF-8; rename it",
                        n.to_string_lossy()
                    )
                }
                Err(_) => continue, // not a possible unit name: systemd ignores it too
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        // A directory (not a link) in a resolved directory is resolved too: no lstat later.
        let mut dirs = self.dirs.borrow_mut();
        for (n, kind) in &names {
            if *kind == Some(Entry::Dir) {
                dirs.entry(join(inner, n)).or_insert_with(|| join(&real, n));
            }
        }
        drop(dirs);
        Ok(names)
    }

    /// Identity of a directory after resolution, for de-duplicating search paths
    /// (`/lib` is often a link to `/usr/lib`).
    pub fn dir_id(&self, inner: &str) -> Result<Option<(u64, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let real = self.resolve(inner)?;
        match fs::metadata(self.host_path(&real)) {
            Ok(m) if m.is_dir() => Ok(Some((m.dev(), m.ino()))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot inspect {inner}")),
        }
    }
}

fn components(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether two host paths lead to the same directory (device and inode).
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Join an in-root directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Parent directory of an in-root path.
pub fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// Last component of an in-root path.
pub fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn proc_self_root_is_the_host_and_a_plain_dir_keeps_its_canonical_path() {
        assert!(Root::new(Path::new("/proc/self/root")).unwrap().is_host());
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("real")).unwrap();
        symlink("real", t.path().join("link")).unwrap();
        let r = Root::new(&t.path().join("link")).unwrap();
        assert_eq!(
            r.host_root(),
            fs::canonicalize(t.path().join("real")).unwrap()
        );
    }

    #[test]
    fn absolute_symlink_is_taken_relative_to_the_root() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("usr/lib/systemd/system")).unwrap();
        symlink("/usr/lib", t.path().join("lib")).unwrap();
        let r = Root::new(t.path()).unwrap();
        assert_eq!(
            r.resolve("/lib/systemd/system").unwrap(),
            "/usr/lib/systemd/system"
        );
    }

    #[test]
    fn relative_symlink_climbing_above_the_root_is_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        symlink("../../../../../tmp", t.path().join("etc/systemd")).unwrap();
        let r = Root::new(t.path()).unwrap();
        let e = r.resolve("/etc/systemd/system").unwrap_err().to_string();
        assert!(e.contains("climbs above the root"), "{e}");
    }

    #[test]
    fn symlink_loop_is_an_error_not_a_hang() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let r = Root::new(t.path()).unwrap();
        assert!(r.resolve("/a/x").is_err());
    }

    #[test]
    fn non_utf8_drop_in_name_is_an_error_not_skipped() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("usr/lib/systemd/system/docker.service.d");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(std::ffi::OsStr::from_bytes(b"\xff.conf")), "").unwrap();
        fs::write(d.join(std::ffi::OsStr::from_bytes(b".\xff.conf")), "").unwrap();
        fs::write(
            d.parent()
                .unwrap()
                .join(std::ffi::OsStr::from_bytes(b"\xff.service")),
            "",
        )
        .unwrap();
        let r = Root::new(t.path()).unwrap();
        let e = r
            .list_dir("/usr/lib/systemd/system/docker.service.d")
            .unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        assert_eq!(
            r.list_dir("/usr/lib/systemd/system").unwrap(),
            ["docker.service.d"]
        );
    }

    #[test]
    fn entry_behind_an_absolute_symlinked_parent_is_looked_up_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("usr/lib/systemd/system")).unwrap();
        fs::write(t.path().join("usr/lib/systemd/system/x.service"), "").unwrap();
        fs::create_dir_all(t.path().join("etc/systemd")).unwrap();
        symlink(
            "/usr/lib/systemd/system",
            t.path().join("etc/systemd/system"),
        )
        .unwrap();
        let r = Root::new(t.path()).unwrap();
        assert_eq!(
            r.entry("/etc/systemd/system/x.service").unwrap(),
            Entry::File
        );
        assert_eq!(
            r.entry("/etc/systemd/system/not-here.service").unwrap(),
            Entry::Missing
        );
    }

    #[test]
    fn path_helpers() {
        assert_eq!(parent("/etc/systemd/system/x.conf"), "/etc/systemd/system");
        assert_eq!(parent("/etc"), "/");
        assert_eq!(basename("/etc/x.conf"), "x.conf");
        assert_eq!(join("/etc", "x"), "/etc/x");
    }
}
