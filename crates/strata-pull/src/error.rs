//! Why a layer could not be pulled straight into a snapshot (the reason a fallback logs).

use std::path::PathBuf;

/// What went wrong while pulling a layer; every case falls back to containerd's own path.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The request's labels do not describe a pullable layer.
    #[error("labels: {0}")]
    Labels(String),
    /// The image reference cannot be parsed.
    #[error("image reference {reference:?}: {why}")]
    Reference {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A configuration file (hosts.toml, credentials) is unreadable or invalid.
    #[error("{path}: {why}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The registry could not be reached or answered an error.
    #[error("registry {url}: {why}")]
    Registry {
        /// The URL requested.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The registry's answer is malformed or breaks a bound.
    #[error("registry {url}: bad answer: {why}")]
    BadAnswer {
        /// The URL requested.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The image does not describe this layer as containerd says it does.
    #[error("image: {0}")]
    Image(String),
    /// The layer's media type is not one Strata applies.
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    /// Applying the layer failed (corrupt blob, wrong digest, full disk, …).
    #[error("applying layer {digest}: {source}")]
    Apply {
        /// The layer's digest.
        digest: String,
        /// What failed.
        source: strata_layer::LayerError,
    },
    /// The layer's content does not match the image's diffID.
    #[error("layer {digest}: diffID {got} but the image config says {want}")]
    DiffId {
        /// The layer's digest.
        digest: String,
        /// What the applier computed.
        got: String,
        /// What the config names.
        want: String,
    },
    /// A snapshot operation failed.
    #[error("snapshot: {0}")]
    Snapshot(#[from] strata_core::Error),
    /// The layer below failed, so this one cannot be built on it.
    #[error("parent layer {0} was not pulled")]
    Parent(String),
}

/// Results of this crate.
pub type Result<T, E = PullError> = std::result::Result<T, E>;
