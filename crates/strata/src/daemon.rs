//! `strata serve`: lock the root, open the backends (recovering from any crash), serve the
//! snapshots API on a unix socket until SIGTERM or SIGINT, then drain and close.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_backend::btrfs::{Btrfs, BtrfsOptions, QuotaSetting};
use strata_backend::native::Native;
use strata_backend::overlay::{Overlay, OverlayOptions};
use strata_backend::{BackendKind, Engine, EngineOptions, OpenError, Recovery};
use strata_core::Snapshotter;
use strata_grpc::backends::Backends;
use strata_grpc::content::ContentStore;
use strata_grpc::metrics::{Metrics, serve_http};
use strata_grpc::server::{TransportError, serve_with_metrics};

use crate::config::{BtrfsQuota, Config, ConfigError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Another daemon holds the root.
    #[error("another strata daemon is using root {root} (it holds {lock}); stop it first")]
    Locked {
        /// The root directory.
        root: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The socket path is served by a live process.
    #[error("socket {0} is in use by a running process; is another strata daemon serving it?")]
    SocketInUse(PathBuf),
    /// A backend could not be opened.
    #[error("opening the {backend} backend: {source}")]
    Backend {
        /// The backend.
        backend: BackendKind,
        /// What failed.
        source: OpenError,
    },
    /// A filesystem step failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The step.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving: {0}")]
    Serve(#[from] TransportError),
    /// The metrics endpoint could not listen on its address.
    #[error("metrics address {address}: {source}")]
    Metrics {
        /// The configured `HOST:PORT`.
        address: String,
        /// What failed.
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_owned();
    move |source| DaemonError::Io { op, path, source }
}

/// Wraps every backend in the pull path when `[pull] enabled` (see [`strata_pull`]).
/// The pull path counts into `metrics`.
pub fn with_pull(
    config: &Config,
    backends: Vec<Arc<dyn Snapshotter>>,
    metrics: &Arc<strata_pull::PullMetrics>,
) -> Result<Vec<Arc<dyn Snapshotter>>, DaemonError> {
    if !config.pull.enabled {
        tracing::info!("pulling layers into snapshots is off ([pull] enabled = false)");
        return Ok(backends);
    }
    let registry = strata_pull::registry::Registry::new(config.pull.clone())
        .map_err(|e| ConfigError(format!("[pull]: {e}")))?;
    let puller = strata_pull::Puller::new(registry, Arc::clone(metrics));
    tracing::info!(
        hosts_dir = %config.pull.hosts_dir.display(),
        max_concurrent_layers = config.pull.max_concurrent_layers,
        "pulling layers into snapshots when containerd sends remote-snapshot labels"
    );
    Ok(backends
        .into_iter()
        .map(|b| {
            let remote = strata_pull::Remote::new(b, Arc::clone(&puller));
            // Layers a previous run was pulling when it stopped are half-built: drop them.
            if let Err(e) = remote.sweep(&strata_core::Ctx::background()) {
                tracing::warn!(backend = remote.name(), error = %e, "removing half-built pulled layers");
            }
            Arc::new(remote) as Arc<dyn Snapshotter>
        })
        .collect())
}

/// The runtime answering requests, with `threads` threads (0: one per CPU).
///
/// One by default: every request's filesystem work and flush runs on tokio's blocking pool
/// whatever this is, so what is left here (HTTP/2, decoding, metadata reads of a few
/// microseconds) keeps one thread far from busy (over 15,000 Stats a second on the
/// development machine), and a single thread spares each request the wake-ups of a
/// work-stealing scheduler: measured against it with `strata-bench --baseline`, 7-15 % less
/// server CPU per write and a lower p50 with 8 clients.
fn runtime_builder(threads: usize) -> tokio::runtime::Builder {
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 1 {
        builder.worker_threads(threads);
    }
    builder
}

/// Opens every configured backend under `config.root`, the default first.
pub fn open_backends(config: &Config) -> Result<Vec<Arc<dyn Snapshotter>>, DaemonError> {
    let options = EngineOptions {
        sync_remove: config.sync_remove,
        sync_commit: config.sync_commit,
        upperdir_label: false,
    };
    let mut backends: Vec<Arc<dyn Snapshotter>> = Vec::new();
    for kind in config.served_backends()? {
        let root = config.root.join(kind.as_str());
        let fail = |source| DaemonError::Backend {
            backend: kind,
            source,
        };
        let (backend, recovery): (Arc<dyn Snapshotter>, Recovery) = match kind {
            BackendKind::Overlay => {
                let driver = Overlay::new(
                    &root,
                    OverlayOptions::probe(config.overlay.mount_options.clone()),
                )
                .map_err(fail)?;
                let options = EngineOptions {
                    upperdir_label: config.overlay.upperdir_label,
                    ..options.clone()
                };
                let (engine, recovery) = Engine::open(&root, driver, options).map_err(fail)?;
                (Arc::new(engine), recovery)
            }
            BackendKind::Native => {
                let (engine, recovery) =
                    Engine::open(&root, Native, options.clone()).map_err(fail)?;
                (Arc::new(engine), recovery)
            }
            BackendKind::Btrfs => {
                let driver = Btrfs::new(&root, btrfs_options(config)).map_err(fail)?;
                let (engine, recovery) =
                    Engine::open(&root, driver, options.clone()).map_err(fail)?;
                (Arc::new(engine), recovery)
            }
        };
        report_recovery(kind.as_str(), &recovery);
        backends.push(backend);
    }
    Ok(backends)
}

/// The btrfs driver's settings from `[btrfs]`.
pub fn btrfs_options(config: &Config) -> BtrfsOptions {
    BtrfsOptions {
        quota: match config.btrfs.quota {
            BtrfsQuota::Keep => QuotaSetting::Keep,
            BtrfsQuota::Qgroups => QuotaSetting::Qgroups,
            BtrfsQuota::Simple => QuotaSetting::Simple,
        },
        default_max_size: Some(config.btrfs.default_max_size).filter(|&b| b > 0),
    }
}

fn report_recovery(backend: &str, r: &Recovery) {
    if r.temp_dirs_removed > 0 || r.orphan_dirs > 0 || r.missing_dirs > 0 || r.unsealed > 0 {
        tracing::warn!(
            backend,
            snapshots = r.snapshots,
            temp_dirs_removed = r.temp_dirs_removed,
            active_snapshots_made_writable = r.unsealed,
            orphan_dirs_awaiting_cleanup = r.orphan_dirs,
            snapshots_missing_directories = r.missing_dirs,
            "recovered from an unclean stop"
        );
    } else {
        tracing::info!(backend, snapshots = r.snapshots, "backend ready");
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), DaemonError> {
    // Nothing the daemon creates is for other users: the store, lock and temporary files get
    // 0600/0700 whatever umask it was started with; directories and the socket that need
    // other modes get them explicitly.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    create_dir_mode(&config.root, 0o700)?;
    let lock_path = strata_backend::lock_path(&config.root);
    let _lock = strata_backend::lock_root(&config.root)
        .map_err(io("lock", &lock_path))?
        .ok_or_else(|| DaemonError::Locked {
            root: config.root.clone(),
            lock: lock_path.clone(),
        })?;

    let pull_metrics = Arc::new(strata_pull::PullMetrics::default());
    let backends = Arc::new(Backends::new(with_pull(
        &config,
        open_backends(&config)?,
        &pull_metrics,
    )?));
    let runtime = runtime_builder(config.runtime_threads)
        .enable_all()
        .thread_name("strata")
        .build()
        .map_err(io("starting runtime", Path::new("-")))?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal()?;
        let listener = bind_socket(&config)?;
        let metrics = Arc::new(Metrics::new());
        if config.pull.enabled {
            metrics.add_counters(move || pull_metrics.rows());
        }
        let metrics_server = match config.metrics_address.as_deref() {
            Some(address) if !address.is_empty() => {
                let http = tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|source| DaemonError::Metrics {
                        address: address.to_owned(),
                        source,
                    })?;
                if let Ok(bound) = http.local_addr() {
                    tracing::info!(address = %bound, "serving metrics on http://{bound}/metrics");
                }
                let task = serve_http(
                    http,
                    Arc::clone(&metrics),
                    Arc::clone(&backends),
                    std::future::pending(),
                );
                Some(tokio::spawn(task))
            }
            _ => None,
        };
        tracing::info!(
            address = %config.address.display(),
            root = %config.root.display(),
            backends = ?backends.all().iter().map(|b| b.name()).collect::<Vec<_>>(),
            "serving"
        );
        let content = (!config.containerd_address.as_os_str().is_empty()).then(|| {
            tracing::info!(
                containerd = %config.containerd_address.display(),
                "serving containerd's diff service; layer blobs are read from containerd's content store"
            );
            Arc::new(ContentStore::new(&config.containerd_address))
        });
        let served = serve_with_metrics(
            listener,
            Arc::clone(&backends),
            metrics,
            content,
            shutdown,
        )
        .await;
        // Scrapes walk the backends, which are about to close.
        if let Some(task) = metrics_server {
            task.abort();
        }
        served?;
        Ok::<(), DaemonError>(())
    });
    tracing::info!("shutting down: closing backends");
    backends.close();
    let _ = std::fs::remove_file(&config.address);
    result
}

/// Installs the SIGTERM and SIGINT handlers at once (so a signal that arrives while the
/// socket is being bound already means "shut down", not "die") and returns the future that
/// resolves on the first of them.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(io("installing SIGTERM handler", Path::new("-")))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(io("installing SIGINT handler", Path::new("-")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Binds the socket, replacing a stale socket file left by a crash (but never one a live
/// process answers on), with mode 0660 and the configured group.
fn bind_socket(config: &Config) -> Result<tokio::net::UnixListener, DaemonError> {
    let path = &config.address;
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        create_dir_mode(parent, 0o750)?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::SocketInUse(path.clone()));
        }
        std::fs::remove_file(path).map_err(io("removing stale socket", path))?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("chmod", path))?;
    if !config.socket_group.is_empty() {
        let gid = resolve_group(&config.socket_group).ok_or_else(|| {
            ConfigError(format!(
                "socket_group {:?} is not a known group",
                config.socket_group
            ))
        })?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io("chown", path))?;
    }
    Ok(listener)
}

/// A group name or number to a gid, from `/etc/group`.
fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == group).then(|| fields.nth(1)?.parse().ok())?
    })
}

fn create_dir_mode(path: &Path, mode: u32) -> Result<(), DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    let existed = path.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io("mkdir", path))?;
    if !existed {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", path))?;
    }
    Ok(())
}
