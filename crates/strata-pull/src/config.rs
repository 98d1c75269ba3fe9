//! `[pull]` settings of Strata's configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// containerd's registry host directory (`config_path` of its CRI registry config).
pub const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// How Strata pulls layers itself (the remote-snapshot path).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PullConfig {
    /// Pull layers straight into snapshots when containerd's Prepare names them. On by
    /// default: it only acts when the client asked for remote-snapshot labels, and any
    /// failure falls back to containerd's own pull.
    pub enabled: bool,
    /// containerd's `hosts.toml` directory: `<dir>/<host>/hosts.toml` names mirrors, the
    /// server, plain-HTTP endpoints.
    pub hosts_dir: PathBuf,
    /// A TOML file of credentials: `[hosts."HOST"] username = "…" password = "…"`.
    pub credentials_file: Option<PathBuf>,
    /// Hosts reached over plain HTTP when no hosts.toml says otherwise.
    pub plain_http: Vec<String>,
    /// Layers fetched at once ahead of containerd (the following layers of an image).
    pub max_concurrent_layers: usize,
    /// Memory for layers fetched ahead of their parent, in bytes; a layer that does not
    /// fit waits for its parent and streams.
    pub prefetch_memory_bytes: u64,
    /// Connection timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Longest wait for any answer or any body read, seconds.
    pub read_timeout_secs: u64,
    /// Retries of a failed request (connection errors, 5xx, 429), with exponential backoff.
    pub retries: u32,
    /// Redirects followed per request (blob storage).
    pub max_redirects: u32,
    /// Largest manifest or config accepted, bytes.
    pub max_manifest_bytes: u64,
}

impl Default for PullConfig {
    fn default() -> PullConfig {
        PullConfig {
            enabled: true,
            hosts_dir: DEFAULT_HOSTS_DIR.into(),
            credentials_file: None,
            plain_http: Vec::new(),
            max_concurrent_layers: 3,
            prefetch_memory_bytes: 256 << 20,
            connect_timeout_secs: 10,
            read_timeout_secs: 30,
            retries: 2,
            max_redirects: 5,
            max_manifest_bytes: 4 << 20,
        }
    }
}
