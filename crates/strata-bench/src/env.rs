//! The benchmark's private environment: a run directory, fresh journaled ext4 filesystems on
//! loop devices, the server processes and the mounts the client makes — and their teardown,
//! which runs however the benchmark ends (success, error, panic, SIGINT/SIGTERM/SIGHUP).
//!
//! Everything lives under `<work-dir>/run-<pid>/`. A run killed with SIGKILL leaves its
//! directory behind; the next run reaps it ([`Env::new`] calls [`reap_stale`]): it kills the
//! servers whose command line names that directory, unmounts what is mounted under it,
//! detaches the loop devices backed by its images and deletes it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Result;

/// One fresh ext4 filesystem on a loop device backed by a sparse image file.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The image file.
    pub image: PathBuf,
    /// The loop device (`/dev/loopN`).
    pub loopdev: String,
    /// Where the filesystem is mounted.
    pub mountpoint: PathBuf,
}

#[derive(Default)]
struct State {
    children: Vec<Child>,
    disks: Vec<Disk>,
    /// Mounts made by the client itself (chain row), unmounted first at teardown.
    mounts: Vec<PathBuf>,
    torn_down: bool,
}

/// The run directory and everything to tear down.
pub struct Env {
    /// `<work-dir>/run-<pid>`.
    pub dir: PathBuf,
    state: Mutex<State>,
}

impl Env {
    /// Reaps what dead runs left in `work_dir`, then creates this run's directory.
    pub fn new(work_dir: &Path) -> Result<Env> {
        fs::create_dir_all(work_dir)
            .map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
        reap_stale(work_dir);
        let dir = work_dir.join(format!("run-{}", std::process::id()));
        if dir.exists() {
            reap_dir(&dir);
        }
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Env {
            dir,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a fresh journaled ext4 of `size` bytes on a loop device and mounts it at
    /// `<run dir>/<name>`. The disk is registered for teardown as soon as it exists.
    pub fn make_disk(&self, name: &str, size: u64) -> Result<Disk> {
        self.make_disk_fs(name, size, "ext4")
    }

    /// [`Env::make_disk`] with filesystem `fs`: `ext4` (journaled, inode tables written
    /// now) or `btrfs`.
    pub fn make_disk_fs(&self, name: &str, size: u64, fs: &str) -> Result<Disk> {
        let image = self.dir.join(format!("disk-{name}.img"));
        let mountpoint = self.dir.join(name);
        {
            let f = fs::File::create(&image)
                .map_err(|e| format!("creating {}: {e}", image.display()))?;
            f.set_len(size)
                .map_err(|e| format!("sizing {}: {e}", image.display()))?;
        }
        let loopdev = match output("losetup", &["--find", "--show", path_str(&image)?]) {
            Ok(out) => out.trim().to_owned(),
            Err(e) => {
                let _ = fs::remove_file(&image);
                return Err(e);
            }
        };
        let disk = Disk {
            image,
            loopdev,
            mountpoint,
        };
        self.state().disks.push(disk.clone());
        // Journaled ext4 (mke2fs' default has_journal). The inode tables and journal are
        // written now rather than by ext4lazyinit in the background during the measurements.
        if fs == "btrfs" {
            output("mkfs.btrfs", &["-q", "-f", &disk.loopdev])?;
        } else {
            output(
                "mkfs.ext4",
                &[
                    "-q",
                    "-F",
                    "-E",
                    "lazy_itable_init=0,lazy_journal_init=0",
                    &disk.loopdev,
                ],
            )?;
        }
        fs::create_dir_all(&disk.mountpoint)?;
        output(
            "mount",
            &["-t", fs, &disk.loopdev, path_str(&disk.mountpoint)?],
        )?;
        Ok(disk)
    }

    /// Spawns `cmd` (in its own process group, so a terminal's Ctrl-C reaches only the
    /// benchmark, which then stops it) and registers it for teardown. Returns its pid.
    pub fn spawn(&self, mut cmd: Command) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawning {:?}: {e}", cmd.get_program()))?;
        let pid = child.id();
        self.state().children.push(child);
        Ok(pid)
    }

    /// The exit status of child `pid` if it has exited (it is then forgotten).
    #[allow(
        clippy::zombie_processes,
        reason = "forgotten only once try_wait has reaped it"
    )]
    pub fn try_wait(&self, pid: u32) -> Option<ExitStatus> {
        let mut state = self.state();
        let i = state.children.iter().position(|c| c.id() == pid)?;
        match state.children[i].try_wait() {
            Ok(Some(status)) => {
                state.children.remove(i);
                Some(status)
            }
            _ => None,
        }
    }

    /// Stops child `pid`: SIGTERM, then SIGKILL after `grace`. Returns its exit status and
    /// whether it had to be killed; `None` if it is not (or no longer) registered.
    pub fn stop(&self, pid: u32, grace: Duration) -> Option<(ExitStatus, bool)> {
        let mut child = {
            let mut state = self.state();
            let i = state.children.iter().position(|c| c.id() == pid)?;
            state.children.remove(i)
        };
        Some(stop_child(&mut child, grace))
    }

    /// Records a mount the client made at `target`.
    pub fn add_mount(&self, target: &Path) {
        self.state().mounts.push(target.to_owned());
    }

    /// Forgets a mount the client has unmounted.
    pub fn remove_mount(&self, target: &Path) {
        self.state().mounts.retain(|m| m != target);
    }

    /// Tears everything down, once: stops the servers, unmounts the client's mounts and
    /// anything else under the disks, unmounts the disks, detaches the loop devices and
    /// deletes the images. With `keep_logs`, the run directory keeps the server logs;
    /// otherwise it is deleted. Problems are reported on stderr, never fatal.
    pub fn teardown(&self, keep_logs: bool) {
        let mut state = self.state();
        if state.torn_down {
            return;
        }
        state.torn_down = true;
        for mut child in std::mem::take(&mut state.children) {
            let (status, killed) = stop_child(&mut child, Duration::from_secs(20));
            if killed {
                eprintln!(
                    "strata-bench: teardown: pid {} did not stop on SIGTERM; killed",
                    child.id()
                );
            } else if !status.success() {
                eprintln!(
                    "strata-bench: teardown: pid {} exited with {status}",
                    child.id()
                );
            }
        }
        // Servers we did not start directly (e.g. behind a wrapper such as strace that exits
        // on SIGTERM without its child) would keep the disks busy.
        kill_strays(&self.dir, Duration::from_secs(10));
        for target in std::mem::take(&mut state.mounts).iter().rev() {
            if strata_sys::mount::unmount(target, false).is_err() {
                let _ = strata_sys::mount::unmount(target, true);
            }
        }
        for disk in std::mem::take(&mut state.disks).iter().rev() {
            teardown_disk(disk);
        }
        drop(state);
        if keep_logs {
            eprintln!("strata-bench: server logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn stop_child(child: &mut Child, grace: Duration) -> (ExitStatus, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (status, false);
    }
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let status = child.wait().unwrap_or_else(|_| {
                    use std::os::unix::process::ExitStatusExt;
                    ExitStatus::from_raw(9)
                });
                return (status, true);
            }
        }
    }
}

/// Unmounts everything mounted at or below `dir` (deepest first; lazily if busy).
fn unmount_below(dir: &Path) {
    let mut points: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        if strata_sys::mount::unmount(&p, false).is_err()
            && let Err(e) = strata_sys::mount::unmount(&p, true)
        {
            eprintln!("strata-bench: teardown: unmounting {}: {e}", p.display());
        }
    }
}

fn teardown_disk(disk: &Disk) {
    // Mounts under the disk's mountpoint (the disk's own included), in case anything mounted
    // a snapshot there.
    unmount_below(&disk.mountpoint);
    if let Err(e) = output("losetup", &["-d", &disk.loopdev]) {
        eprintln!("strata-bench: teardown: {e}");
    }
    if let Err(e) = fs::remove_file(&disk.image) {
        eprintln!(
            "strata-bench: teardown: removing {}: {e}",
            disk.image.display()
        );
    }
    let _ = fs::remove_dir(&disk.mountpoint);
}

/// The mount points in this mount namespace (`/proc/self/mountinfo`, octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.len() >= i + 4
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reaps the run directories in `work_dir` whose benchmark process is gone.
pub fn reap_stale(work_dir: &Path) {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && is_bench_process(pid) {
            continue; // another live benchmark
        }
        eprintln!(
            "strata-bench: reaping {} left by a run that did not finish",
            entry.path().display()
        );
        reap_dir(&entry.path());
    }
}

fn is_bench_process(pid: u32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| {
            exe.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("strata-bench"))
        })
        .unwrap_or(false)
}

/// The server processes (a `strata serve` or `strata-anchor` command line) whose command line
/// names a path under `dir`, other than this process.
fn servers_under(dir: &Path) -> Vec<(rustix::process::Pid, String)> {
    let needle = format!("{}/", dir.to_string_lossy());
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let server = cmdline.contains(" serve ") || cmdline.contains("strata-anchor");
        if pid != me
            && server
            && cmdline.contains(&needle)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            found.push((pid, cmdline));
        }
    }
    found
}

/// SIGTERMs the servers under `dir` that are still running, SIGKILLs them after `grace`.
fn kill_strays(dir: &Path, grace: Duration) {
    let strays = servers_under(dir);
    if strays.is_empty() {
        return;
    }
    for (pid, cmdline) in &strays {
        eprintln!("strata-bench: teardown: stopping stray server pid {pid:?}: {cmdline}");
        let _ = rustix::process::kill_process(*pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !servers_under(dir).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (pid, _) in servers_under(dir) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// Kills the servers whose command line names `dir`, unmounts everything under it, detaches
/// its images' loop devices and deletes it.
fn reap_dir(dir: &Path) {
    for (pid, cmdline) in servers_under(dir) {
        eprintln!("strata-bench: killing stale server pid {pid:?}: {cmdline}");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(200));
    unmount_below(dir);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "img")
                && let Ok(out) = output("losetup", &["-j", &path.to_string_lossy()])
            {
                for line in out.lines() {
                    if let Some(dev) = line.split(':').next() {
                        let _ = output("losetup", &["-d", dev]);
                    }
                }
            }
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        eprintln!("strata-bench: removing {}: {e}", dir.display());
    }
}

/// Runs a command, returning its stdout, or an error with its stderr.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `path` as UTF-8, or an error.
pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()).into())
}

/// Parses a size such as `8G`, `512M`, `4096` (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    n.checked_mul(mult)
        .filter(|&v| v >= 64 << 20)
        .ok_or_else(|| format!("size {s:?} out of range (at least 64M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(r"/a\040b"), "/a b");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert!(parse_size("1K").is_err());
        assert!(parse_size("x").is_err());
    }
}
