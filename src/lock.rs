//! One dropfix at a time per root: an exclusive `flock`, waited for with a message.

use crate::root::Root;
use anyhow::{bail, Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// Lock file on the running host. In /run itself, which only root may write: in the
/// world-writable /run/lock any user could create it first and lock root out. /run is a tmpfs,
/// so no trace survives a reboot.
const HOST_LOCK: &str = "/run/dropfix.lock";

/// Held while dropfix works on a root; released on drop (or when the process dies).
pub struct Lock {
    _fd: OwnedFd,
}

impl Lock {
    /// Take the lock for `root`, waiting (and saying so) while another dropfix holds it.
    /// On the host it is /run/dropfix.lock; on an image root, the root directory itself,
    /// so the image gains no file.
    pub fn acquire(root: &Root) -> Result<Lock> {
        let fd = if root.is_host() {
            host_lock()?
        } else {
            rfs::open(
                root.host_root(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("cannot lock {}", root.host_root().display()))?
        };
        match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let who = holder(&fd).map_or(String::new(), |pid| format!(" (pid {pid})"));
                eprintln!(
                    "dropfix: another dropfix{who} is working on this root; waiting for it to finish"
                );
                rfs::flock(&fd, FlockOperation::LockExclusive).context("waiting for the lock")?;
            }
            Err(e) => return Err(e).context("cannot take the lock"),
        }
        Ok(Lock { _fd: fd })
    }
}

/// The host's lock file, created without following a link; anything at that path that is
/// not a plain file of ours is refused rather than locked (or written through).
fn host_lock() -> Result<OwnedFd> {
    let fd = match rfs::open(
        HOST_LOCK,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    ) {
        Ok(fd) => fd,
        // No /run (a minimal system): the root directory serves, as for --root.
        Err(Errno::NOENT) => {
            return rfs::open(
                "/",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .context("cannot open / to lock it")
        }
        Err(Errno::LOOP) => bail!("refusing the lock file {HOST_LOCK}: it is a symlink; remove it"),
        Err(e) => return Err(e).with_context(|| format!("cannot open the lock file {HOST_LOCK}")),
    };
    let st = rfs::fstat(&fd).with_context(|| format!("cannot inspect {HOST_LOCK}"))?;
    let uid = rustix::process::geteuid().as_raw();
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_uid != uid
        || st.st_nlink != 1
    {
        bail!(
            "refusing the lock file {HOST_LOCK}: not a plain file owned by uid {uid} (owner {}, {} links); remove it",
            st.st_uid,
            st.st_nlink
        );
    }
    Ok(fd)
}

/// The pid holding a flock on `fd`'s file, from /proc/locks.
fn holder(fd: &impl AsFd) -> Option<u32> {
    let st = rfs::fstat(fd).ok()?;
    let (major, minor) = (rfs::major(st.st_dev), rfs::minor(st.st_dev));
    // One read() with room for all of it: /proc/locks is produced afresh on each read call,
    // and locks coming and going between calls can make a line slip past unseen.
    let mut buf = vec![0u8; 1 << 20];
    let n = std::io::Read::read(&mut std::fs::File::open("/proc/locks").ok()?, &mut buf).ok()?;
    let locks = String::from_utf8_lossy(&buf[..n]);
    locks.lines().find_map(|l| {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF"
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let ma = u32::from_str_radix(id.next()?, 16).ok()?;
        let mi = u32::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        (ma == major && mi == minor && ino == st.st_ino).then(|| f.get(4)?.parse().ok())?
    })
}
