//! Pulling image layers straight into snapshots, with containerd's remote-snapshot protocol.
//!
//! When containerd unpacks an image with the snapshotter-info handler
//! (`snapshotters.AppendInfoHandlerWrapper`: CRI with `disable_snapshot_annotations = false`,
//! or a client pulling with it), each layer's Prepare carries the chain ID
//! (`containerd.io/snapshot.ref`) and where the layer comes from (`cri.image-ref`,
//! `cri.manifest-digest`, `cri.layer-digest`, `cri.image-layers`). [`Remote`] wraps a backend:
//! on such a Prepare it fetches the layer from the registry itself, applies it into a new
//! snapshot, commits it labelled with the chain ID on the parent containerd named, and answers
//! `AlreadyExists`; containerd then finds the snapshot (List by label and parent) and neither
//! downloads nor applies the layer. The following layers are fetched at once, in parallel.
//! Any failure falls back to the ordinary path: Prepare returns an active snapshot and
//! containerd pulls as usual.
//!
//! - [`reference`], [`hosts`], [`auth`], [`registry`]: the registry client (distribution
//!   API, containerd's `hosts.toml`, anonymous, basic and bearer-token auth, bounded answers).
//! - [`image`]: manifests, configs and chain IDs.
//! - [`remote`], [`jobs`]: the protocol and the shared, parallel layer jobs.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod hosts;
pub mod image;
pub mod jobs;
pub mod metrics;
pub mod reference;
pub mod registry;
pub mod remote;

pub use config::PullConfig;
pub use error::PullError;
pub use jobs::Puller;
pub use metrics::PullMetrics;
pub use remote::Remote;
