//! Performing the mounts a snapshotter returns: bind mounts and overlays.
//!
//! Overlays go through the new mount API (`fsopen` + one `fsconfig` per lower layer with
//! `lowerdir+`), so a chain is not limited by the single page that `mount(2)` accepts for its
//! options string.

use std::io;
use std::path::Path;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

/// Mounts one mount of a snapshot (`kind` `bind` or `overlay`, as containerd's `types.Mount`)
/// on `target`.
pub fn mount(kind: &str, source: &str, options: &[String], target: &Path) -> io::Result<()> {
    match kind {
        "bind" | "rbind" => bind(source, options, target),
        "overlay" => overlay(options, target),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("mount type {other:?} is not supported"),
        )),
    }
}

fn bind(source: &str, options: &[String], target: &Path) -> io::Result<()> {
    let recursive = options.iter().any(|o| o == "rbind");
    if recursive {
        rustix::mount::mount_bind_recursive(source, target)?;
    } else {
        rustix::mount::mount_bind(source, target)?;
    }
    // A bind mount ignores MS_RDONLY on creation; read-only takes a remount.
    if options.iter().any(|o| o == "ro") {
        rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")?;
    }
    Ok(())
}

fn overlay(options: &[String], target: &Path) -> io::Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let mut readonly = false;
    for option in options {
        match option.split_once('=') {
            Some(("lowerdir", layers)) => {
                for layer in layers.split(':') {
                    rustix::mount::fsconfig_set_string(&fs, "lowerdir+", layer)?;
                }
            }
            Some((key, value)) => rustix::mount::fsconfig_set_string(&fs, key, value)?,
            None if option == "ro" => readonly = true,
            None if option == "rw" => {}
            None => rustix::mount::fsconfig_set_flag(&fs, option.as_str())?,
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    let attrs = if readonly {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    // The detached mount's fd must be closed before anyone unmounts, or umount sees EBUSY.
    drop(mnt);
    Ok(())
}

/// Unmounts `target`; with `detach`, lazily (`MNT_DETACH`).
pub fn unmount(target: &Path, detach: bool) -> io::Result<()> {
    let flags = if detach {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    rustix::mount::unmount(target, flags)?;
    Ok(())
}

/// A mount attached to no directory: reachable only through its descriptor, at
/// [`Detached::path`]. It goes away when dropped, or when the process dies, so it can never
/// be left behind, and nobody else can stumble on it.
#[derive(Debug)]
pub struct Detached(std::os::fd::OwnedFd);

impl Detached {
    /// A path to the mount's root, valid in this process while `self` lives:
    /// `/proc/self/fd/N`.
    pub fn path(&self) -> std::path::PathBuf {
        use std::os::fd::AsRawFd;
        format!("/proc/self/fd/{}", self.0.as_raw_fd()).into()
    }
}

/// A read-only overlay of `layers` (top first; at least two, as overlayfs requires without
/// an upper layer), attached nowhere.
pub fn detached_overlay(layers: &[&str]) -> io::Result<Detached> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for layer in layers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", *layer)?;
    }
    detach(&fs)
}

/// An empty read-only tmpfs, attached nowhere: the tree of no layers.
pub fn detached_empty() -> io::Result<Detached> {
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    detach(&fs)
}

fn detach(fs: &std::os::fd::OwnedFd) -> io::Result<Detached> {
    rustix::mount::fsconfig_create(fs)?;
    let mnt = rustix::mount::fsmount(
        fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY,
    )?;
    Ok(Detached(mnt))
}
