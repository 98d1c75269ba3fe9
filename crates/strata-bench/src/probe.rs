//! Deterministic per-operation figures of a server: bytes it wrote (`/proc/<pid>/io`), and
//! the system calls it made, flushes among them, counted by `strace -f -c` attached for the
//! length of one traced measurement.
//!
//! Unlike latency, these do not move with the machine's load: the same requests make the
//! same system calls and write the same pages. Tracing slows the server down (every system
//! call stops it), so a traced measurement is never a timed one.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Result;

/// The system calls that flush data or metadata to the disk.
pub const FLUSHES: &[&str] = &[
    "fsync",
    "fdatasync",
    "syncfs",
    "sync",
    "sync_file_range",
    "msync",
];

/// Bytes `pid` has caused to be written to storage so far (`write_bytes` of
/// `/proc/<pid>/io`: every thread, exited ones included); 0 if it cannot be read.
pub fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// System calls counted over a traced measurement.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyscallCounts {
    /// Every system call, all threads.
    pub total: u64,
    /// Those in [`FLUSHES`].
    pub flushes: u64,
    /// Per system call name, the most frequent first.
    pub by_name: Vec<(String, u64)>,
}

/// `strace -f -c` attached to a running process (all its threads, and those it starts).
pub struct Trace {
    child: Child,
    out: PathBuf,
}

impl Trace {
    /// Attaches to `pid`, writing the summary to `out`; returns once strace reports the
    /// process attached (at most 10 s).
    pub fn attach(pid: u32, out: &Path) -> Result<Trace> {
        let mut child = Command::new("strace")
            .args(["-f", "-c", "-o"])
            .arg(out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting strace (apt-get install strace): {e}"))?;
        let stderr = child.stderr.take().ok_or("strace: no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                let attached = line.contains("attached");
                let _ = tx.send((attached, line));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((true, _)) => break,
                Ok((false, line)) => eprintln!("  strace: {line}"),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("strace did not attach to process {pid}").into());
                }
            }
        }
        // The other threads' "attached" lines follow at once; let them all land.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Trace {
            child,
            out: out.to_owned(),
        })
    }

    /// Detaches (SIGINT) and reads the counts.
    pub fn finish(mut self) -> Result<SyscallCounts> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).ok_or("strace pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
        let status = self.child.wait()?;
        // strace either exits once detached or dies of the SIGINT it was sent.
        if !status.success() && status.signal() != Some(rustix::process::Signal::INT.as_raw()) {
            eprintln!("  strace exited with {status}");
        }
        let text = std::fs::read_to_string(&self.out)
            .map_err(|e| format!("reading {}: {e}", self.out.display()))?;
        let _ = std::fs::remove_file(&self.out);
        Ok(parse_summary(&text))
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses `strace -c`'s table: `% time  seconds  usecs/call  calls  [errors]  syscall`.
pub fn parse_summary(text: &str) -> SyscallCounts {
    let mut counts = SyscallCounts::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].starts_with('%') || f[0].starts_with('-') {
            continue;
        }
        let (Some(name), Ok(calls)) = (f.last(), f[3].parse::<u64>()) else {
            continue;
        };
        if *name == "total" {
            continue;
        }
        counts.total += calls;
        if FLUSHES.contains(name) {
            counts.flushes += calls;
        }
        counts.by_name.push(((*name).to_owned(), calls));
    }
    counts
        .by_name
        .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_summary() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.000400          40        10           fdatasync
 30.00    0.000300           1       300        12 futex
 30.00    0.000300           3       100           pwrite64
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000           2       410        12 total
";
        let c = parse_summary(text);
        assert_eq!(c.total, 410);
        assert_eq!(c.flushes, 10);
        assert_eq!(c.by_name[0], ("futex".to_owned(), 300));
    }

    #[test]
    fn reads_own_write_bytes() {
        // Readable for this process (the value itself depends on what it wrote).
        assert!(std::fs::read_to_string("/proc/self/io").is_ok());
        let _ = write_bytes(std::process::id());
    }
}
