//! Test harness: runs the real `strata` binary on a fresh root and socket and connects a
//! client to it. Dropping a [`Daemon`] stops it (SIGTERM, then SIGKILL) and removes its root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_core::snapshot::Labels;
use strata_core::{Info, Mount};
use strata_grpc::client::{self, Client, Code};

/// Both backends, for tests that must hold for each.
pub const BACKENDS: &[&str] = &["overlay", "native"];

/// A running daemon on a private root.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub backend: String,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Extra environment for the next (re)start, e.g. a crash point.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon whose default backend is `backend`.
    pub fn start(backend: &str) -> Daemon {
        Daemon::start_with(backend, &[])
    }

    /// Starts a daemon with extra command-line arguments.
    pub fn start_with(backend: &str, extra: &[&str]) -> Daemon {
        Daemon::start_in(Path::new("/tmp"), backend, extra)
    }

    /// Starts a daemon whose root and socket are in a fresh directory under `base` (a
    /// filesystem a backend needs, e.g. a loop btrfs), with extra command-line arguments.
    pub fn start_in(base: &Path, backend: &str, extra: &[&str]) -> Daemon {
        Daemon::start_in_with_env(base, backend, extra, &[])
    }

    /// As [`Daemon::start_in`], with extra environment variables from the first start on.
    pub fn start_in_with_env(
        base: &Path,
        backend: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir_in(base)
            .unwrap();
        let root = dir.path().join("root");
        let socket = dir.path().join("s.sock");
        let mut daemon = Daemon {
            dir,
            root,
            socket,
            backend: backend.to_owned(),
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        daemon.restart();
        daemon
    }

    /// The command that runs this daemon.
    pub fn command(&self) -> Command {
        self.command_at(&self.socket)
    }

    /// The command that runs this daemon's configuration on another socket.
    pub fn command_at(&self, socket: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("serve")
            .arg("--root")
            .arg(&self.root)
            .arg("--address")
            .arg(socket)
            .arg("--backend")
            .arg(&self.backend)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// (Re)starts the process and waits until the socket answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("daemon log");
        let child = self
            .command()
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn strata");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("strata exited before serving: {status}\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "strata did not start serving within 20s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` and waits for the process; returns its exit status.
    pub fn stop_with(&mut self, signal: rustix::process::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("strata did not exit within 20s of {signal:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where the daemon's stderr goes (appended across restarts).
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("daemon.stderr")
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Waits until the daemon's stderr contains `needle` (e.g. a pause point's message).
    pub fn wait_for_stderr(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "daemon never logged {needle:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for a daemon that is expected to die by itself (a crash point); returns how it
    /// ended.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "strata did not exit by itself within 30s:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").id()
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// With the daemon stopped: every snapshot directory on disk belongs to a snapshot in the
    /// metadata and every snapshot in the metadata has its directory, for `backend`.
    pub fn assert_disk_matches_metadata(&self, backend: &str) {
        assert!(self.child.is_none(), "stop the daemon first");
        let root = self.root.join(backend);
        let store = strata_meta::Store::open(&root.join("metadata.redb")).expect("open store");
        let mut ids: Vec<u64> = store
            .read(&strata_core::Ctx::background(), |tx| tx.ids())
            .unwrap()
            .into_iter()
            .collect();
        ids.sort_unstable();
        drop(store);
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(root.join("snapshots")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let id: u64 = name
                .parse()
                .unwrap_or_else(|_| panic!("unexpected entry {name:?} in snapshots/"));
            assert!(
                root.join("snapshots").join(&name).join("fs").is_dir(),
                "{name}/fs missing"
            );
            on_disk.push(id);
        }
        on_disk.sort_unstable();
        assert_eq!(
            on_disk, ids,
            "{backend}: directories on disk vs ids in metadata"
        );
    }

    /// Stops the daemon with SIGTERM and asserts a clean exit.
    pub fn stop(&mut self) {
        let status = self.stop_with(rustix::process::Signal::TERM);
        assert!(status.success(), "strata exited with {status} on SIGTERM");
    }

    /// A client connected to the daemon, addressing its default backend.
    pub async fn client(&self) -> Client {
        Client::connect(&self.socket).await.expect("connect")
    }

    /// The backend's snapshot directory.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join(&self.backend).join("snapshots")
    }

    /// Names of the entries of the snapshots directory, sorted.
    pub fn snapshot_dirs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.snapshots_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The directory a snapshot's mounts write into: the bind source, or the overlay upperdir.
pub fn writable_dir(mounts: &[Mount]) -> PathBuf {
    let m = &mounts[0];
    if m.kind == "bind" {
        return PathBuf::from(&m.source);
    }
    let upper = m
        .options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .expect("upperdir");
    PathBuf::from(upper)
}

/// Labels from `(key, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// No labels.
pub fn no_labels() -> Labels {
    Labels::new()
}

/// Every snapshot's info from List with `filters`, sorted by name.
pub async fn list_all(client: &Client, filters: &[&str]) -> Vec<Info> {
    let mut infos = client.list(filters).await.expect("list");
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    infos
}

/// Names from [`list_all`].
pub async fn names(client: &Client, filters: &[&str]) -> Vec<String> {
    list_all(client, filters)
        .await
        .into_iter()
        .map(|i| i.name)
        .collect()
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// What requests that must change nothing are checked against: the store (every snapshot's
/// info, from List) and the disk (the backend's snapshot directories).
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    infos: Vec<Info>,
    dirs: Vec<String>,
}

/// A request that must be refused: what it was, the codes containerd's contract allows for
/// it, and what the daemon answered.
pub type Refusal<'a> = (&'a str, &'a [Code], Result<(), client::Error>);

impl Daemon {
    /// The store and the disk as they are now, seen through `client`.
    pub async fn footprint(&self, client: &Client) -> Footprint {
        Footprint {
            infos: list_all(client, &[]).await,
            dirs: self.snapshot_dirs(),
        }
    }

    /// The "refused request changes nothing" check: each of `refusals` failed with one of
    /// its codes and a message that says what is wrong, and together they left the store and
    /// the disk exactly as `before`. Returns how many refusals were checked.
    pub async fn assert_refused_without_side_effects(
        &self,
        client: &Client,
        before: &Footprint,
        refusals: Vec<Refusal<'_>>,
    ) -> usize {
        let backend = &self.backend;
        let checked = refusals.len();
        for (what, codes, result) in refusals {
            let error = result.expect_err(what);
            assert!(
                codes.contains(&error.code()),
                "{backend}: {what}: got {error}"
            );
            // tonic's router answers an unknown method with the bare code, as gRPC servers do.
            assert!(
                !error.message().is_empty() || error.code() == Code::Unimplemented,
                "{backend}: {what}: the error says nothing"
            );
        }
        let after = self.footprint(client).await;
        assert_eq!(
            after.infos, before.infos,
            "{backend}: refused requests changed the store"
        );
        assert_eq!(
            after.dirs, before.dirs,
            "{backend}: refused requests changed the disk"
        );
        checked
    }
}
