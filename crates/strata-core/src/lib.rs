//! Strata's vocabulary: what a snapshot is, what a snapshotter promises, and the errors it
//! answers with. Nothing here knows about gRPC, redb or the filesystem.
#![forbid(unsafe_code)]

pub mod context;
pub mod crash;
pub mod error;
pub mod filter;
pub mod labels;
pub mod snapshot;
pub mod snapshotter;
pub mod time;

pub use context::{Canceller, Ctx};
pub use error::{Error, Result, StoreError};
pub use filter::Filter;
pub use snapshot::{Info, InfoRef, Kind, Mount, Usage};
pub use snapshotter::{Census, CleanupReport, Snapshotter};
