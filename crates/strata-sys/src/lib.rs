//! The only place Strata talks to the kernel beyond `std`: file locks, filesystem feature
//! probes, filesystem types and free space, faithful tree copies (owners, modes, times,
//! xattrs, devices, hard links, reflinks), disk usage walks and mounts. Everything is built
//! on rustix's safe wrappers, so the crate needs no `unsafe` of its own; a raw call that
//! rustix lacks would get its one `unsafe` block here, with a `// SAFETY:` note.
#![forbid(unsafe_code)]

pub mod copy;
pub mod fsinfo;
pub mod lock;
pub mod mount;
pub mod probe;
pub mod usage;

/// Flushes the whole filesystem holding `path` to stable storage (`syncfs(2)`).
pub fn syncfs(path: &std::path::Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    rustix::fs::syncfs(&dir)?;
    Ok(())
}
