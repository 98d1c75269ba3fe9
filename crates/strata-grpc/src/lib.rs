//! containerd's `containerd.services.snapshots.v1.Snapshots` gRPC API for Strata.
//!
//! - [`proto`]: the generated wire types (from our own `proto/`, wire-identical to
//!   containerd's), which appear nowhere else in Strata;
//! - [`convert`]: wire ⇄ domain conversions; [`list_wire`]: the List answer, encoded
//!   straight from stored records;
//! - [`status`]: the one mapping of domain errors to gRPC codes;
//! - [`backends`]: the backends a daemon serves and the `snapshotter` names that reach them;
//! - [`server`]: the service, dispatching each request to a backend by its `snapshotter`
//!   field and running the blocking work off the async runtime;
//! - [`diff`]: containerd's diff service (Apply, Diff) over the layer library, reading and
//!   writing blobs through containerd's content store ([`content`]);
//! - [`client`]: the typed client over a unix socket (domain types in, domain types out,
//!   errors carrying the gRPC code), for the CLI, the benchmark and the tests;
//! - [`raw`]: the raw-wire escape hatch, for tests that must send malformed requests;
//! - [`metrics`]: Prometheus metrics the server records, what a scrape reads from the
//!   backends, and their HTTP endpoint.
#![forbid(unsafe_code)]

pub mod backends;
pub mod client;
pub mod content;
mod context;
pub mod convert;
pub mod diff;
pub mod heavy;
pub mod list_wire;
pub mod metrics;
pub mod raw;
pub mod server;
pub mod status;

/// Generated protobuf and gRPC code.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// `containerd.*` packages.
    pub mod containerd {
        /// `containerd.types`.
        pub mod types {
            tonic::include_proto!("containerd.types");
        }
        /// `containerd.services.*`.
        pub mod services {
            /// `containerd.services.diff`.
            pub mod diff {
                /// `containerd.services.diff.v1`.
                pub mod v1 {
                    tonic::include_proto!("containerd.services.diff.v1");
                }
            }
            /// `containerd.services.content`.
            pub mod content {
                /// `containerd.services.content.v1`.
                pub mod v1 {
                    tonic::include_proto!("containerd.services.content.v1");
                }
            }
            /// `containerd.services.introspection`.
            pub mod introspection {
                /// `containerd.services.introspection.v1`.
                pub mod v1 {
                    tonic::include_proto!("containerd.services.introspection.v1");
                }
            }
            /// `containerd.services.leases`.
            pub mod leases {
                /// `containerd.services.leases.v1`.
                pub mod v1 {
                    tonic::include_proto!("containerd.services.leases.v1");
                }
            }
            /// `containerd.services.snapshots`.
            pub mod snapshots {
                /// `containerd.services.snapshots.v1`.
                pub mod v1 {
                    tonic::include_proto!("containerd.services.snapshots.v1");
                }
            }
        }
    }
    pub use containerd::services::content::v1 as content;
    pub use containerd::services::diff::v1 as diff;
    pub use containerd::services::introspection::v1 as introspection;
    pub use containerd::services::leases::v1 as leases;
    pub use containerd::services::snapshots::v1 as snapshots;
    pub use containerd::types;
}
