//! Daemon configuration: a TOML file where every key is optional, overridden by flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_backend::BackendKind;

/// Default root directory.
pub const DEFAULT_ROOT: &str = "/var/lib/strata";
/// Default socket path.
pub const DEFAULT_ADDRESS: &str = "/run/strata/strata.sock";
/// Default socket of containerd, whose content store the diff service uses.
pub const DEFAULT_CONTAINERD_ADDRESS: &str = "/run/containerd/containerd.sock";
/// Default configuration file, read when it exists and no `--config` is given.
pub const DEFAULT_CONFIG: &str = "/etc/strata/config.toml";
/// The backends served when the configuration names none: those that work on any
/// filesystem (btrfs needs its root on btrfs, so it is served only when asked for).
pub const DEFAULT_BACKENDS: &[BackendKind] = &[BackendKind::Overlay, BackendKind::Native];

/// The daemon's configuration (see `contrib/config.toml` for a commented example).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root directory; each backend keeps its data in `<root>/<backend>`.
    pub root: PathBuf,
    /// Unix socket to serve the snapshots API on.
    pub address: PathBuf,
    /// Backend used for requests whose `snapshotter` field is empty or `strata`.
    pub backend: String,
    /// Backends served (the default one is always served).
    pub backends: Vec<String>,
    /// Group owning the socket (name or number); empty leaves it root's.
    pub socket_group: String,
    /// Remove directories during Remove rather than at Cleanup.
    pub sync_remove: bool,
    /// Flush the filesystem before recording each Commit.
    pub sync_commit: bool,
    /// Threads answering requests: 1 (the default) runs the server on one thread, 0 on one
    /// per CPU, N on N. Filesystem work and flushes run on a separate pool whatever this is.
    pub runtime_threads: usize,
    /// Log filter when `RUST_LOG` is unset (`info`, `debug`, `strata=debug`, …).
    pub log_level: String,
    /// `HOST:PORT` to serve Prometheus metrics on (`GET /metrics`); empty or absent: none.
    pub metrics_address: Option<String>,
    /// containerd's socket, whose content store the diff service reads layer blobs from and
    /// writes produced layers to; empty: no diff service.
    pub containerd_address: PathBuf,
    /// Overlay backend settings.
    pub overlay: OverlayConfig,
    /// btrfs backend settings.
    pub btrfs: BtrfsConfig,
    /// Pulling layers straight into snapshots (containerd's remote-snapshot protocol).
    pub pull: strata_pull::PullConfig,
}

/// `[btrfs]` settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BtrfsConfig {
    /// Quotas at start-up: `keep` (leave the filesystem as it is), `qgroups` (enable full
    /// qgroup accounting if off) or `simple` (enable simple quotas if off, Linux 6.7+).
    pub quota: BtrfsQuota,
    /// Size limit in bytes of writable snapshots without a `containerd.io/snapshot/max-size`
    /// label (never of extraction snapshots); absent or 0: none. Needs quotas.
    pub default_max_size: u64,
}

/// The `quota` setting of `[btrfs]`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BtrfsQuota {
    /// Leave quotas as they are.
    #[default]
    Keep,
    /// Enable full qgroup accounting if quotas are off.
    Qgroups,
    /// Enable simple quotas if quotas are off.
    Simple,
}

/// `[overlay]` settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OverlayConfig {
    /// Add the `containerd.io/snapshot/overlay.upperdir` label to every snapshot's info.
    pub upperdir_label: bool,
    /// Extra options put on every overlay mount.
    pub mount_options: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            root: DEFAULT_ROOT.into(),
            address: DEFAULT_ADDRESS.into(),
            backend: BackendKind::Overlay.to_string(),
            backends: DEFAULT_BACKENDS.iter().map(|b| b.to_string()).collect(),
            socket_group: String::new(),
            sync_remove: false,
            sync_commit: false,
            runtime_threads: 1,
            log_level: "info".into(),
            metrics_address: None,
            containerd_address: DEFAULT_CONTAINERD_ADDRESS.into(),
            overlay: OverlayConfig::default(),
            btrfs: BtrfsConfig::default(),
            pull: strata_pull::PullConfig::default(),
        }
    }
}

/// A configuration problem, naming the file or the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `path`; with `explicit` false a missing file means the defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text)
                .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) => Err(ConfigError(format!("config {}: {e}", path.display()))),
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        Ok(config)
    }

    /// The backends to serve, the default first, each once; an unknown name is an error.
    pub fn served_backends(&self) -> Result<Vec<BackendKind>, ConfigError> {
        let mut served = Vec::new();
        for name in std::iter::once(&self.backend).chain(&self.backends) {
            let kind: BackendKind = name.parse().map_err(|e| ConfigError(format!("{e}")))?;
            if !served.contains(&kind) {
                served.push(kind);
            }
        }
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty file is the defaults; every key is optional.
    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    /// The shipped example restates every default, as its header says.
    #[test]
    fn shipped_example_is_the_defaults() {
        let text = include_str!("../../../contrib/config.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    /// Keys are read, and a misspelt key is an error rather than silently ignored.
    #[test]
    fn keys_and_typos() {
        let c = Config::parse(
            "root = \"/x\"\nbackend = \"native\"\n[overlay]\nmount_options = [\"volatile\"]\n",
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/x"));
        assert_eq!(
            c.served_backends().unwrap(),
            vec![BackendKind::Native, BackendKind::Overlay]
        );
        assert_eq!(c.overlay.mount_options, vec!["volatile"]);
        assert!(Config::parse("roots = \"/x\"").is_err());
        let b = Config::parse(
            "backend = \"btrfs\"\n[btrfs]\nquota = \"simple\"\ndefault_max_size = 1073741824\n",
        )
        .unwrap();
        assert_eq!(
            b.served_backends().unwrap(),
            vec![
                BackendKind::Btrfs,
                BackendKind::Overlay,
                BackendKind::Native
            ]
        );
        assert_eq!(b.btrfs.quota, BtrfsQuota::Simple);
        assert_eq!(b.btrfs.default_max_size, 1 << 30);
        assert!(Config::parse("[btrfs]\nquota = \"on\"").is_err());
        assert!(
            Config::parse("backend = \"zfs\"")
                .unwrap()
                .served_backends()
                .is_err()
        );
    }
}
