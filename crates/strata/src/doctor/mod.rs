//! `strata doctor`: what this machine and root support and what Strata will use, one line
//! per check, each OK, WARN or FAIL with its reason.
//!
//! Checks only look (and make throw-away probe files in the root); they change nothing a
//! daemon uses, so doctor is safe to run beside one.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use strata_backend::BackendKind;
use strata_backend::overlay::OverlayOptions;
use strata_sys::{fsinfo, probe};

use crate::cli::format::human_size;
use crate::config::Config;
use crate::settings::{ConfigArgs, Source};

mod differ;
mod pull;
mod quota;

/// `strata doctor`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// `--config`, `--root`, `--address`, as for `strata serve`.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print the checks as JSON
    #[arg(long)]
    pub json: bool,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth knowing or fixing.
    Warn,
    /// Strata will not work (as configured) until it is fixed.
    Fail,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`d_type`, `reflink`, …).
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// Why: what was found and what it means.
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The configuration in effect.
    pub config: Config,
}

impl Report {
    /// The worst verdict.
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// The report as aligned lines and a summary.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                c.status.to_string(),
                c.name,
                c.detail
            ));
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "doctor: {} OK, {} WARN, {} FAIL\n",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        ));
        out
    }
}

/// Runs `strata doctor`: prints the report; returns 1 if any check failed, else 0.
pub fn main(args: DoctorArgs) -> u8 {
    let report = diagnose(&args.config);
    if args.json {
        print!("{}", crate::cli::render::json(&report));
    } else {
        print!("{}", report.text());
    }
    u8::from(report.worst() == Status::Fail)
}

/// Runs every check for the configuration `args` select.
pub fn diagnose(args: &ConfigArgs) -> Report {
    let mut checks = Vec::new();
    let config = match args.load() {
        Ok((config, source)) => {
            checks.push(match source {
                Source::File(path) => {
                    check("config", Status::Ok, format!("read {}", path.display()))
                }
                Source::Defaults => check(
                    "config",
                    Status::Ok,
                    format!(
                        "{} absent: built-in defaults",
                        crate::config::DEFAULT_CONFIG
                    ),
                ),
            });
            config
        }
        Err(e) => {
            checks.push(check(
                "config",
                Status::Fail,
                format!("{e}; the rest assumes the defaults"),
            ));
            let mut config = Config::default();
            if let Some(root) = &args.root {
                config.root = root.clone();
            }
            if let Some(address) = &args.address {
                config.address = address.clone();
            }
            config
        }
    };
    let served = match config.served_backends() {
        Ok(b) => b,
        Err(e) => {
            checks.push(check("backends", Status::Fail, e.to_string()));
            config.backend.parse().into_iter().collect()
        }
    };
    let overlay = served.contains(&BackendKind::Overlay);
    let native = served.contains(&BackendKind::Native);
    let btrfs = served.contains(&BackendKind::Btrfs);
    checks.push(check(
        "settings",
        Status::Ok,
        format!(
            "root {}, socket {}, backends {} (default {}), sync_remove {}, sync_commit {}, \
             runtime_threads {}, metrics {}",
            config.root.display(),
            config.address.display(),
            served
                .iter()
                .map(|b| b.as_str())
                .collect::<Vec<_>>()
                .join(","),
            config.backend,
            config.sync_remove,
            config.sync_commit,
            config.runtime_threads,
            config
                .metrics_address
                .as_deref()
                .filter(|a| !a.is_empty())
                .unwrap_or("off"),
        ),
    ));

    let release = probe::kernel_release();
    let kernel = parse_kernel_version(&release);
    checks.push(check("kernel", Status::Ok, format!("Linux {release}")));

    // Probes need a directory on the root's filesystem: the root, or the nearest existing
    // directory above it when the daemon has not created it yet.
    let probe_dir = nearest_existing(&config.root);
    let fs = fsinfo::fs_type(&probe_dir).ok();
    let fs_name = fs
        .map(|t| t.to_string())
        .unwrap_or_else(|| "unknown".into());

    checks.push(root_check(&config.root));
    checks.push(filesystem_check(fs, overlay, &probe_dir));
    checks.push(space_check(&probe_dir));

    if overlay {
        let options = OverlayOptions::probe(config.overlay.mount_options.clone());
        checks.extend(overlay_checks(&options, &probe_dir, kernel));
    } else {
        checks.push(check(
            "overlayfs",
            Status::Ok,
            "the overlay backend is not served: not needed",
        ));
    }
    checks.push(d_type_check(&probe_dir, overlay));
    checks.push(idmap_check(kernel, fs.and_then(|t| t.name()), &fs_name));
    checks.push(reflink_check(&probe_dir, native, &fs_name));
    checks.extend(quota::btrfs_checks(&config, btrfs, fs, &probe_dir, kernel));
    checks.push(quota::project_quota_check(overlay, fs, &probe_dir));
    checks.push(socket_check(&config));
    checks.push(differ::differ_check(&config));
    checks.push(pull::pull_check(&config));
    Report { checks, config }
}

/// `6.1.0-18-amd64` → `(6, 1)`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The first kernel release with idmapped mounts on `fs` (the VFS gained them in 5.12; each
/// filesystem opted in with its own release).
pub fn idmap_since(fs: &str) -> Option<(u32, u32)> {
    Some(match fs {
        "ext4" | "xfs" | "vfat" => (5, 12),
        "btrfs" | "ntfs3" => (5, 15),
        "f2fs" => (5, 18),
        "erofs" | "overlay" => (5, 19),
        "tmpfs" => (6, 3),
        _ => return None,
    })
}

fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_owned();
    while !p.is_dir() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

fn root_check(root: &Path) -> Check {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                "root",
                Status::Warn,
                format!(
                    "{} does not exist yet; `strata serve` creates it (mode 0700)",
                    root.display()
                ),
            );
        }
        Err(e) => return check("root", Status::Fail, format!("{}: {e}", root.display())),
    };
    if !meta.is_dir() {
        return check(
            "root",
            Status::Fail,
            format!("{} is not a directory", root.display()),
        );
    }
    let mode = meta.mode() & 0o7777;
    let owner = format!("owner {}:{}", meta.uid(), meta.gid());
    let euid = rustix::process::geteuid().as_raw();
    if meta.uid() != euid {
        return check(
            "root",
            Status::Warn,
            format!(
                "{} mode {mode:04o}, {owner}: not owned by this user (uid {euid}), who runs the daemon?",
                root.display()
            ),
        );
    }
    if mode & 0o077 != 0 {
        return check(
            "root",
            Status::Warn,
            format!(
                "{} mode {mode:04o}, {owner}: group or others can reach snapshot contents; \
                 `chmod 700 {}`",
                root.display(),
                root.display()
            ),
        );
    }
    check(
        "root",
        Status::Ok,
        format!("{} mode {mode:04o}, {owner}", root.display()),
    )
}

fn filesystem_check(fs: Option<fsinfo::FsType>, overlay: bool, dir: &Path) -> Check {
    let Some(fs) = fs else {
        return check(
            "filesystem",
            Status::Warn,
            format!("statfs {} failed", dir.display()),
        );
    };
    let detail = format!("{} holds {} (magic {:#x})", fs, dir.display(), fs.magic);
    match fs.name() {
        Some("overlay") if overlay => check(
            "filesystem",
            Status::Fail,
            format!(
                "{detail}: an overlayfs cannot hold another overlay's upper directories (is \
                 this a container? put the root on a volume)"
            ),
        ),
        Some("tmpfs" | "ramfs") => check(
            "filesystem",
            Status::Warn,
            format!("{detail}: snapshots do not survive a reboot"),
        ),
        Some("nfs" | "cifs" | "fuse") => check(
            "filesystem",
            Status::Warn,
            format!("{detail}: network and FUSE filesystems are not tested as a root"),
        ),
        Some(_) => check("filesystem", Status::Ok, detail),
        None => check(
            "filesystem",
            Status::Warn,
            format!("{detail}: a filesystem Strata does not know"),
        ),
    }
}

fn space_check(dir: &Path) -> Check {
    let s = match fsinfo::space(dir) {
        Ok(s) => s,
        Err(e) => {
            return check(
                "space",
                Status::Warn,
                format!("statvfs {}: {e}", dir.display()),
            );
        }
    };
    let percent = |free: u64, total: u64| {
        if total == 0 {
            100.0
        } else {
            free as f64 * 100.0 / total as f64
        }
    };
    let bytes_pct = percent(s.bytes_available, s.bytes_total);
    let inodes_pct = percent(s.inodes_available, s.inodes_total);
    let inodes = if s.inodes_total == 0 {
        "inodes allocated on demand".to_owned()
    } else {
        format!(
            "{} of {} inodes free ({inodes_pct:.0}%)",
            s.inodes_available, s.inodes_total
        )
    };
    let detail = format!(
        "{} of {} free ({bytes_pct:.0}%), {inodes}",
        human_size(s.bytes_available as i64),
        human_size(s.bytes_total as i64)
    );
    let low = bytes_pct.min(inodes_pct);
    if low < 1.0 {
        check(
            "space",
            Status::Fail,
            format!("{detail}: Prepare and Commit will fail with ResourceExhausted"),
        )
    } else if low < 10.0 {
        check(
            "space",
            Status::Warn,
            format!("{detail}: running low (`strata cleanup`, containerd's GC)"),
        )
    } else {
        check("space", Status::Ok, detail)
    }
}

fn overlay_checks(options: &OverlayOptions, dir: &Path, kernel: Option<(u32, u32)>) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut mount_options = options.extra.clone();
    if options.index_off {
        mount_options.push("index=off".into());
    }
    if options.userxattr {
        mount_options.push("userxattr".into());
    }
    checks.push(check(
        "overlayfs",
        Status::Ok,
        if probe::overlay_registered() {
            "registered in /proc/filesystems"
        } else {
            "not yet in /proc/filesystems (the module loads on the first mount)"
        },
    ));
    checks.push(match probe::overlay_mount_works(dir, &mount_options) {
        Ok(()) => check(
            "overlay mount",
            Status::Ok,
            format!(
                "a test overlay (2 lower layers and an upper one, options {}) mounted, read and \
                 written under {}",
                if mount_options.is_empty() {
                    "none".to_owned()
                } else {
                    mount_options.join(",")
                },
                dir.display()
            ),
        ),
        Err(e) if e.raw_os_error() == Some(1) => check(
            "overlay mount",
            Status::Warn,
            format!("not tried: mounting needs CAP_SYS_ADMIN ({e})"),
        ),
        Err(e) => check(
            "overlay mount",
            Status::Fail,
            format!(
                "a test overlay under {} failed: {e} (`dmesg | tail` has overlayfs's reason)",
                dir.display()
            ),
        ),
    });
    checks.push(if options.index_off {
        check(
            "index=off",
            Status::Ok,
            format!(
                "supported (module default index={}): Strata passes index=off, so upper \
                 directories can be mounted again after a crash",
                probe::overlay_parameter("index").unwrap_or_else(|| "?".into())
            ),
        )
    } else {
        check(
            "index=off",
            Status::Ok,
            "the overlay module has no index feature: nothing to turn off",
        )
    });
    checks.push(if options.userxattr {
        let old = kernel.is_some_and(|k| k < (5, 11));
        check(
            "userxattr",
            if old { Status::Fail } else { Status::Ok },
            if old {
                "needed (inside a user namespace) but this kernel predates it (5.11)"
            } else {
                "needed: inside a user namespace, so Strata passes userxattr (user.* xattrs)"
            },
        )
    } else {
        check(
            "userxattr",
            Status::Ok,
            "not needed: the initial user namespace can write trusted.* xattrs",
        )
    });
    for (param, what) in [
        (
            "redirect_dir",
            "renamed directories are stored as redirects",
        ),
        ("metacopy", "copy-ups of metadata changes store no data"),
    ] {
        let configured = options
            .extra
            .iter()
            .find(|o| o.starts_with(&format!("{param}=")));
        let value = probe::overlay_parameter(param);
        let name = param;
        checks.push(match (configured, value.as_deref()) {
            (Some(opt), _) => check(
                name,
                if opt.ends_with("=off") {
                    Status::Ok
                } else {
                    Status::Warn
                },
                format!(
                    "{opt} set in [overlay] mount_options: when on, {what}, so a layer's \
                     directory is not a self-contained diff"
                ),
            ),
            (None, Some("Y" | "on" | "follow")) => check(
                name,
                Status::Warn,
                format!(
                    "module default {}: {what}, so a layer's directory is not a \
                     self-contained diff for tools that read it directly; add `{param}=off` to \
                     [overlay] mount_options to be sure",
                    value.as_deref().unwrap_or("")
                ),
            ),
            (None, Some(v)) => check(
                name,
                Status::Ok,
                format!("module default {v}: layers are plain directories"),
            ),
            (None, None) => check(
                name,
                Status::Ok,
                "not offered by this kernel's overlay module",
            ),
        });
    }
    checks
}

fn d_type_check(dir: &Path, overlay: bool) -> Check {
    match probe::supports_d_type(dir) {
        Ok(true) => check(
            "d_type",
            Status::Ok,
            format!("directory entries carry their type under {}", dir.display()),
        ),
        Ok(false) => check(
            "d_type",
            if overlay { Status::Fail } else { Status::Warn },
            "directory entries lack their type (xfs with ftype=0?): overlayfs misbehaves, the \
             overlay backend refuses to start",
        ),
        Err(e) => check(
            "d_type",
            Status::Warn,
            format!("probe under {} failed: {e}", dir.display()),
        ),
    }
}

fn idmap_check(kernel: Option<(u32, u32)>, fs: Option<&str>, fs_name: &str) -> Check {
    const HOW: &str = "judged from the kernel version and filesystem type: rustix 1.1 offers no \
                       mount_setattr, so no live probe is made";
    let Some(kernel) = kernel else {
        return check(
            "idmapped mounts",
            Status::Warn,
            format!("unknown: cannot read the kernel version ({HOW})"),
        );
    };
    let since = fs.and_then(idmap_since);
    match since {
        Some(v) if kernel >= v => check(
            "idmapped mounts",
            Status::Ok,
            format!(
                "available: kernel {}.{} ≥ {}.{}, where {fs_name} gained them ({HOW})",
                kernel.0, kernel.1, v.0, v.1
            ),
        ),
        Some(v) => check(
            "idmapped mounts",
            Status::Warn,
            format!(
                "unavailable: {fs_name} has them from Linux {}.{}, this is {}.{}; containerd's \
                 user-namespaced pods would need them ({HOW})",
                v.0, v.1, kernel.0, kernel.1
            ),
        ),
        None => check(
            "idmapped mounts",
            Status::Warn,
            format!(
                "unknown for {fs_name} (kernel {}.{}); containerd's user-namespaced pods need \
                 them ({HOW})",
                kernel.0, kernel.1
            ),
        ),
    }
}

fn reflink_check(dir: &Path, native: bool, fs_name: &str) -> Check {
    match probe::supports_reflink(dir) {
        Ok(true) => check(
            "reflink",
            Status::Ok,
            format!(
                "FICLONE works on {fs_name}: the native backend shares extents instead of copying"
            ),
        ),
        Ok(false) if native => check(
            "reflink",
            Status::Warn,
            format!(
                "FICLONE not supported on {fs_name}: the native backend copies every file of a \
                 parent in full (btrfs or xfs with reflink=1 would share them)"
            ),
        ),
        Ok(false) => check(
            "reflink",
            Status::Ok,
            format!("FICLONE not supported on {fs_name}; only the native backend would use it"),
        ),
        Err(e) => check(
            "reflink",
            Status::Warn,
            format!("probe under {} failed: {e}", dir.display()),
        ),
    }
}

fn socket_check(config: &Config) -> Check {
    let path = &config.address;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                "socket",
                Status::Warn,
                format!(
                    "{} absent: no daemon is serving there (yet)",
                    path.display()
                ),
            );
        }
        Err(e) => return check("socket", Status::Fail, format!("{}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        return check(
            "socket",
            Status::Fail,
            format!(
                "{} is not a socket: the daemon will refuse to replace it",
                path.display()
            ),
        );
    }
    let mode = meta.mode() & 0o7777;
    let mut detail = format!(
        "{} mode {mode:04o}, owner {}:{}",
        path.display(),
        meta.uid(),
        meta.gid()
    );
    let answers = std::os::unix::net::UnixStream::connect(path).is_ok();
    let mut status = Status::Ok;
    if answers {
        detail.push_str(", a daemon answers");
    } else {
        status = Status::Warn;
        detail.push_str(", nothing answers: stale (left by a crash; the next start replaces it)");
    }
    if mode != 0o660 {
        status = Status::Warn;
        detail.push_str(&format!("; expected mode 0660, not {mode:04o}"));
    }
    if !config.socket_group.is_empty() {
        let want = config.socket_group.parse::<u32>().ok().or_else(|| {
            std::fs::read_to_string("/etc/group").ok().and_then(|g| {
                g.lines().find_map(|l| {
                    let mut f = l.split(':');
                    (f.next()? == config.socket_group).then(|| f.nth(1)?.parse().ok())?
                })
            })
        });
        if want != Some(meta.gid()) {
            status = Status::Warn;
            detail.push_str(&format!(
                "; socket_group {:?} is not its group",
                config.socket_group
            ));
        }
    }
    check("socket", status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distribution suffixes do not confuse the version parser.
    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_kernel_version("garbage"), None);
    }

    /// The idmap table orders by version and knows the common filesystems.
    #[test]
    fn idmap_table() {
        assert!(idmap_since("ext4").unwrap() <= (5, 12));
        assert_eq!(idmap_since("tmpfs"), Some((6, 3)));
        assert_eq!(idmap_since("nfs"), None);
        let c = idmap_check(Some((5, 10)), Some("ext4"), "ext4");
        assert_eq!(c.status, Status::Warn);
        let c = idmap_check(Some((6, 1)), Some("ext4"), "ext4");
        assert_eq!(c.status, Status::Ok);
    }
}
