//! A snapshot's mounts as `mount(8)` command lines (pure), and performing them
//! (`strata mount`, `strata umount`).

use std::path::Path;

use serde::Serialize;
use strata_core::Mount;

use super::format::shell_quote;

/// The most option bytes `mount(2)` accepts: one page, NUL included. Overlay chains longer
/// than that only mount through the new mount API (`strata mount` uses it).
pub const MOUNT_DATA_MAX: usize = 4095;

/// One mount as JSON (containerd's `types.Mount` fields) with its command line.
#[derive(Debug, Serialize)]
pub struct MountJson<'a> {
    /// `bind` or `overlay`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Directory (bind) or `overlay`.
    pub source: &'a str,
    /// Options.
    pub options: &'a [String],
    /// The `mount` command line for the target asked for.
    pub command: String,
}

/// `m` as a `mount` command someone can paste, mounting on `target`:
/// `mount --bind [-o ro] SRC TARGET` for a bind (a snapshot directory holds no mounts, so
/// `rbind` and `bind` do the same), `mount -t TYPE SOURCE -o OPTIONS TARGET` otherwise.
pub fn command_line(m: &Mount, target: &str) -> String {
    let target = shell_quote(target);
    if m.kind == "bind" || m.kind == "rbind" {
        let options: Vec<&str> = m
            .options
            .iter()
            .map(String::as_str)
            .filter(|o| !matches!(*o, "rw" | "bind" | "rbind"))
            .collect();
        let mut line = "mount --bind".to_owned();
        if !options.is_empty() {
            line.push_str(" -o ");
            line.push_str(&shell_quote(&options.join(",")));
        }
        return format!("{line} {} {target}", shell_quote(&m.source));
    }
    let mut line = format!(
        "mount -t {} {}",
        shell_quote(&m.kind),
        shell_quote(&m.source)
    );
    if !m.options.is_empty() {
        line.push_str(" -o ");
        line.push_str(&shell_quote(&m.options.join(",")));
    }
    format!("{line} {target}")
}

/// Whether `m`'s options are too long for `mount(2)` (and so for older `mount(8)`).
pub fn too_long_for_mount2(m: &Mount) -> bool {
    m.options.join(",").len() > MOUNT_DATA_MAX
}

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {source}{hint}")]
pub struct MountError {
    /// `mount overlay on`, `umount`, …
    pub op: String,
    /// The target directory.
    pub target: String,
    /// The OS error.
    pub source: std::io::Error,
    /// Advice for the common causes, with a leading space, or empty.
    pub hint: &'static str,
}

fn hint(e: &std::io::Error, overlay: bool) -> &'static str {
    match e.raw_os_error() {
        Some(1) => " (mounting needs root: CAP_SYS_ADMIN)",
        Some(22) if overlay => " (overlayfs refused the options: `dmesg | tail` says why)",
        Some(16) => " (busy: a process uses it; try --lazy)",
        _ => "",
    }
}

/// Performs `mounts` on `target` in order, as containerd's `mount.All` does; if one fails,
/// unmounts the ones already made and returns the error.
pub fn perform(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    for (done, m) in mounts.iter().enumerate() {
        if let Err(source) = strata_sys::mount::mount(&m.kind, &m.source, &m.options, target) {
            for _ in 0..done {
                let _ = strata_sys::mount::unmount(target, false);
            }
            return Err(MountError {
                op: format!("mount {} on", m.kind),
                target: target.display().to_string(),
                hint: hint(&source, m.kind == "overlay"),
                source,
            });
        }
    }
    Ok(())
}

/// Unmounts `target` (lazily with `lazy`).
pub fn unmount(target: &Path, lazy: bool) -> Result<(), MountError> {
    strata_sys::mount::unmount(target, lazy).map_err(|source| MountError {
        op: "umount".to_owned(),
        target: target.display().to_string(),
        hint: match source.raw_os_error() {
            Some(22) => " (not a mount point)",
            _ => hint(&source, false),
        },
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Binds become `mount --bind`, read-only ones with `-o ro`.
    #[test]
    fn binds() {
        assert_eq!(
            command_line(
                &mount("bind", "/r/snapshots/1/fs", &["rw", "rbind"]),
                "/mnt"
            ),
            "mount --bind /r/snapshots/1/fs /mnt"
        );
        assert_eq!(
            command_line(
                &mount("bind", "/r/snapshots/1/fs", &["ro", "rbind"]),
                "/mnt"
            ),
            "mount --bind -o ro /r/snapshots/1/fs /mnt"
        );
    }

    /// Overlays keep every option, in order, comma-joined; odd paths are quoted.
    #[test]
    fn overlays() {
        let m = mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/r/2/work",
                "upperdir=/r/2/fs",
                "lowerdir=/r/1/fs",
            ],
        );
        assert_eq!(
            command_line(&m, "/my mnt"),
            "mount -t overlay overlay -o index=off,workdir=/r/2/work,upperdir=/r/2/fs,lowerdir=/r/1/fs '/my mnt'"
        );
        assert!(!too_long_for_mount2(&m));
    }
}
