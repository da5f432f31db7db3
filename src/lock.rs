//! One dropfix at a time per root: an exclusive `flock`, waited for with a message.

use crate::root::Root;
use anyhow::{Context, Result};
use rustix::fd::OwnedFd;
use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// Lock file on the running host (`/run/lock` is a tmpfs: no trace survives a reboot).
const HOST_LOCK: &str = "/run/lock/dropfix.lock";

/// Held while dropfix writes; released on drop.
pub struct Lock {
    _fd: OwnedFd,
}

impl Lock {
    /// Take the lock for `root`, waiting (and saying so) while another dropfix holds it.
    /// On the host it is a file under /run/lock; on an image root, the root directory itself,
    /// so the image gains no file.
    pub fn acquire(root: &Root) -> Result<Lock> {
        let fd = if root.is_host() {
            rfs::open(
                HOST_LOCK,
                OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .or_else(|_| {
                rfs::open(
                    "/",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            })
            .context("cannot open a lock")?
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
                eprintln!(
                    "dropfix: another dropfix is working on this root; waiting for it to finish"
                );
                rfs::flock(&fd, FlockOperation::LockExclusive).context("waiting for the lock")?;
            }
            Err(e) => return Err(e).context("cannot take the lock"),
        }
        Ok(Lock { _fd: fd })
    }
}
