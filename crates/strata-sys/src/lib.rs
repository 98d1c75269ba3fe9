//! The only place Strata talks to the kernel beyond `std`: file locks, filesystem feature
//! probes, filesystem types and free space, faithful tree copies (owners, modes, times,
//! xattrs, devices, hard links, reflinks), disk usage walks, mounts, work confined inside a
//! directory tree (`beneath`), and btrfs subvolumes and quota groups. Everything is built on
//! rustix's safe wrappers; the btrfs ioctls, which rustix lacks, are the only `unsafe` code,
//! each block with a `// SAFETY:` note.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod beneath;
#[allow(unsafe_code)]
pub mod btrfs;
pub mod copy;
pub mod fsinfo;
pub mod lock;
pub mod mount;
pub mod probe;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;

/// Flushes the whole filesystem holding `path` to stable storage (`syncfs(2)`).
pub fn syncfs(path: &std::path::Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    rustix::fs::syncfs(&dir)?;
    Ok(())
}
