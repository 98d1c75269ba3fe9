//! The two servers under test: Strata (`strata serve`) and the anchor (`strata-anchor`,
//! containerd's own snapshotter behind containerd's snapshots gRPC service), each on its own
//! fresh disk, and what the kernel says about their CPU time and memory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_grpc::client::Client;

use crate::Result;
use crate::env::{Disk, Env};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Strata.
    Strata,
    /// containerd's snapshotter behind `strata-anchor`.
    Containerd,
}

impl Kind {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Strata => "strata",
            Kind::Containerd => "containerd",
        }
    }
}

/// How to start the servers.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// The `strata-anchor` binary.
    pub anchor: PathBuf,
    /// Another `strata` binary to run in the anchor's place (`--baseline`).
    pub baseline: Option<PathBuf>,
    /// Strata's configuration file (`--config`); `None` writes an empty one, so that
    /// `/etc/strata/config.toml` does not leak into the measurements.
    pub strata_config: Option<PathBuf>,
    /// The backend both serve: `overlay` or `native`.
    pub backend: String,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// Its process id.
    pub pid: u32,
    /// Its unix socket.
    pub socket: PathBuf,
    /// Its disk.
    pub disk: Disk,
    /// Its stderr log.
    pub log: PathBuf,
    /// The `snapshotter` field sent with every request (the backend's name; the anchor
    /// ignores it).
    pub snapshotter: String,
}

/// CPU time of a process, in seconds (all threads, exited ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// User time (utime).
    pub user: f64,
    /// System time (stime): the kernel working on the process's behalf, system calls.
    pub sys: f64,
}

impl Cpu {
    /// user + sys.
    pub fn total(self) -> f64 {
        self.user + self.sys
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            user: self.user - o.user,
            sys: self.sys - o.sys,
        }
    }
}

impl std::ops::AddAssign for Cpu {
    fn add_assign(&mut self, o: Cpu) {
        self.user += o.user;
        self.sys += o.sys;
    }
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// CPU time so far.
    pub cpu: Cpu,
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub hwm_kib: u64,
}

impl Server {
    /// Starts server `kind` with its root on `disk` and waits (at most 60 s) until its
    /// socket accepts connections.
    pub fn start(env: &Env, kind: Kind, bins: &Binaries, disk: Disk) -> Result<Server> {
        Server::start_at(env, kind, bins, disk, kind.name())
    }

    /// [`Server::start`] with root `<disk>/<name>`, socket `<run dir>/<name>.sock` and log
    /// `<run dir>/<name>.stderr`, so that several servers can share one disk.
    pub fn start_at(
        env: &Env,
        kind: Kind,
        bins: &Binaries,
        disk: Disk,
        name: &str,
    ) -> Result<Server> {
        let root = disk.mountpoint.join(name);
        let socket = env.dir.join(format!("{name}.sock"));
        let log = env.dir.join(format!("{name}.stderr"));
        let stderr = fs::File::create(&log)?;
        let strata = match (kind, &bins.baseline) {
            (Kind::Strata, _) => Some(&bins.strata),
            (Kind::Containerd, baseline) => baseline.as_ref(),
        };
        let mut cmd = match strata {
            Some(strata) => {
                let config = match &bins.strata_config {
                    Some(c) => c.clone(),
                    None => {
                        let c = env.dir.join("strata-config.toml");
                        fs::write(&c, "# strata-bench: every setting at its default\n")?;
                        c
                    }
                };
                let mut cmd = Command::new(strata);
                cmd.arg("serve")
                    .arg("--root")
                    .arg(&root)
                    .arg("--address")
                    .arg(&socket)
                    .arg("--backend")
                    .arg(&bins.backend)
                    .arg("--config")
                    .arg(config);
                cmd
            }
            None => {
                let mut cmd = Command::new(&bins.anchor);
                cmd.arg("-root")
                    .arg(&root)
                    .arg("-address")
                    .arg(&socket)
                    .arg("-backend")
                    .arg(&bins.backend);
                cmd
            }
        };
        cmd.stdout(Stdio::null()).stderr(stderr);
        let pid = env.spawn(cmd)?;
        let server = Server {
            kind,
            pid,
            socket,
            disk,
            log,
            snapshotter: bins.backend.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::os::unix::net::UnixStream::connect(&server.socket).is_ok() {
                return Ok(server);
            }
            if let Some(status) = env.try_wait(pid) {
                return Err(format!(
                    "{} exited before serving ({status}); its stderr:\n{}",
                    kind.name(),
                    server.log_tail()
                )
                .into());
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not serve within 60 s", kind.name()).into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of the server's stderr.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Opens a new connection (its own HTTP/2 connection over the socket), addressing
    /// [`Server::snapshotter`] with containerd's namespace header, as containerd's proxy
    /// plugin sends it.
    pub async fn connect(&self) -> Result<Client> {
        let client = Client::connect(&self.socket).await?;
        Ok(client
            .with_snapshotter(self.snapshotter.clone())
            .with_namespace("default")?)
    }

    /// The server's CPU time and memory now (zeros if `/proc` cannot be read).
    pub fn stats(&self) -> ProcStats {
        proc_stats(self.pid).unwrap_or_default()
    }

    /// Errors if the server has died.
    pub fn check_alive(&self, env: &Env) -> Result<()> {
        match env.try_wait(self.pid) {
            Some(status) => Err(format!(
                "{} died ({status}); its stderr:\n{}",
                self.kind.name(),
                self.log_tail()
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Stops the server with SIGTERM and checks it exits cleanly within 20 s.
    pub fn stop(&self, env: &Env) -> Result<()> {
        match env.stop(self.pid, Duration::from_secs(20)) {
            Some((_, true)) => Err(format!(
                "{} did not stop within 20 s of SIGTERM (killed)",
                self.kind.name()
            )
            .into()),
            Some((status, false)) if !status.success() => Err(format!(
                "{} exited with {status} on SIGTERM; its stderr:\n{}",
                self.kind.name(),
                self.log_tail()
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// The directory of the filesystem the server runs on, for `syncfs`.
    pub fn disk_root(&self) -> &Path {
        &self.disk.mountpoint
    }
}

fn proc_stats(pid: u32) -> Option<ProcStats> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), starting at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcStats {
        cpu: Cpu {
            user: utime as f64 / hz,
            sys: stime as f64 / hz,
        },
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stats() {
        let s = proc_stats(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}
