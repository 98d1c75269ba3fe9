//! OCI image layers to and from snapshot directories.
//!
//! - [`apply`](apply::apply): a layer stream (tar, optionally gzip or zstd) written into a
//!   snapshot's directory, its whiteouts converted for the backend that stores it
//!   ([`Whiteouts`]): overlay whiteouts (a 0/0 character device, the `trusted.overlay.opaque`
//!   xattr) for an overlay upper directory, deletions for a full copy. Every path a layer
//!   names is resolved inside the directory by the kernel ([`strata_sys::beneath`]), so no
//!   entry, symlink or hard link can reach outside it. Semantics follow containerd's
//!   applier (`archive/tar.go`).
//! - [`export`]: the layer of an overlay snapshot produced from its upper directory alone —
//!   cost proportional to the changes — with overlay whiteouts turned back into OCI ones.
//! - [`digest`], [`media`]: content digests and layer media types.
//!
//! Nothing here knows about gRPC or containerd's services: the differ, the registry pull,
//! the CLI and the tests all drive these functions directly.
#![forbid(unsafe_code)]

pub mod apply;
pub mod digest;
mod entries;
pub mod error;
pub mod export;
pub mod media;
pub mod stack;
mod stream;

pub use apply::{Applied, Whiteouts, apply};
pub use digest::Digest;
pub use error::{LayerError, Result};
pub use media::Compression;
