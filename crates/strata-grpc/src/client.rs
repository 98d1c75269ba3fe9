//! A typed client of the snapshots service over a unix socket, for the command line, the
//! benchmark and the tests: containerd's calls, taking and returning Strata's domain types
//! ([`Info`], [`Mount`], [`Usage`], [`Labels`]), failing with a typed [`Error`] that carries
//! the gRPC code.
//!
//! Wire types stay behind it; only the `raw` module puts arbitrary bytes on the wire.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use strata_core::snapshot::Labels;
use strata_core::{Info, Mount, Usage};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::convert;
use crate::proto::snapshots as pb;
use crate::proto::snapshots::snapshots_client::SnapshotsClient;
use crate::status::code_name;

/// A gRPC status code, re-exported so that callers need not depend on tonic.
pub use tonic::Code;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Nothing answers on the socket.
    #[error("connect {}: {reason}", address.display())]
    Connect {
        /// The socket.
        address: PathBuf,
        /// The OS's or the transport's words.
        reason: String,
    },
    /// The server refused or failed the call.
    #[error("{}: {message}", code_name(*code))]
    Status {
        /// The gRPC code: containerd's contract (`NotFound`, `AlreadyExists`, …).
        code: Code,
        /// The server's message.
        message: String,
    },
    /// The server's answer lacks what the API promises (the info of a Stat answer).
    #[error("the answer to {call} carries no {missing}")]
    Malformed {
        /// The call.
        call: &'static str,
        /// What was missing.
        missing: &'static str,
    },
    /// A namespace that cannot travel in a gRPC header (not visible ASCII).
    #[error("namespace {0:?} is not a valid header value")]
    Namespace(String),
}

impl Error {
    /// The gRPC code of the failure: the server's, `Unavailable` when nothing answers,
    /// `Internal` for a malformed answer, `InvalidArgument` for a bad namespace.
    pub fn code(&self) -> Code {
        match self {
            Error::Connect { .. } => Code::Unavailable,
            Error::Status { code, .. } => *code,
            Error::Malformed { .. } => Code::Internal,
            Error::Namespace(_) => Code::InvalidArgument,
        }
    }

    /// What the server said, or this error's own words.
    pub fn message(&self) -> String {
        match self {
            Error::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        Error::Status {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Largest answer message accepted.
const MAX_ANSWER: usize = 64 << 20;

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A connection to a snapshots service, addressing one backend (its `snapshotter` field).
///
/// Cloning is cheap and clones share the connection; calls take `&self` and may run
/// concurrently.
#[derive(Debug, Clone)]
pub struct Client {
    inner: SnapshotsClient<Channel>,
    snapshotter: String,
    namespace: Option<MetadataValue<Ascii>>,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to the service listening on the unix socket `socket`; requests go to its
    /// default backend until [`Client::with_snapshotter`] says otherwise.
    pub async fn connect(socket: &Path) -> Result<Client> {
        let connect_error = |reason: String| Error::Connect {
            address: socket.to_owned(),
            reason,
        };
        // tonic's own error says only "transport error"; a plain connect names the cause.
        std::os::unix::net::UnixStream::connect(socket)
            .map_err(|e| connect_error(e.to_string()))?;
        let channel = channel(socket)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Client {
            // gRPC's 4 MiB default protects a server from its clients; a client can trust
            // the answers of the daemon it chose (a List message of long keys and labels).
            inner: SnapshotsClient::new(channel).max_decoding_message_size(MAX_ANSWER),
            snapshotter: String::new(),
            namespace: None,
            timeout: None,
        })
    }

    /// This client, sending `snapshotter` as every request's `snapshotter` field (the proxy
    /// plugin's name containerd would send: `strata`, `native`, `strata-overlay`, …).
    pub fn with_snapshotter(mut self, snapshotter: impl Into<String>) -> Client {
        self.snapshotter = snapshotter.into();
        self
    }

    /// This client, sending containerd's `containerd-namespace` header with every request,
    /// as containerd's proxy plugin does.
    pub fn with_namespace(mut self, namespace: &str) -> Result<Client> {
        let value = MetadataValue::try_from(namespace)
            .map_err(|_| Error::Namespace(namespace.to_owned()))?;
        self.namespace = Some(value);
        Ok(self)
    }

    /// This client, giving every request a deadline of `timeout` (gRPC's `grpc-timeout`
    /// header, which the server honours by cancelling the work).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = Some(timeout);
        self
    }

    /// The `snapshotter` field this client sends.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// `message` as a request carrying this client's header and deadline.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(namespace) = &self.namespace {
            request
                .metadata_mut()
                .insert("containerd-namespace", namespace.clone());
        }
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        request
    }

    /// Prepare: an active snapshot `key` on the committed snapshot `parent` (empty for
    /// none), with `labels`; returns its mounts.
    pub async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let request = self.request(pb::PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
            parent: parent.to_owned(),
            labels,
        });
        let answer = self.inner.clone().prepare(request).await?.into_inner();
        Ok(convert::mounts_from_wire(answer.mounts))
    }

    /// View: a read-only snapshot `key` of the committed snapshot `parent`; returns its
    /// mounts.
    pub async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let request = self.request(pb::ViewSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
            parent: parent.to_owned(),
            labels,
        });
        let answer = self.inner.clone().view(request).await?.into_inner();
        Ok(convert::mounts_from_wire(answer.mounts))
    }

    /// Mounts of the active or view snapshot `key`.
    pub async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let request = self.request(pb::MountsRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        });
        let answer = self.inner.clone().mounts(request).await?.into_inner();
        Ok(convert::mounts_from_wire(answer.mounts))
    }

    /// Commit: the active snapshot `key` becomes the committed snapshot `name` with
    /// `labels`. `parent` (containerd 2.2's rebase) names the parent it must have; `None`
    /// keeps the one it was prepared on.
    pub async fn commit(
        &self,
        name: &str,
        key: &str,
        labels: Labels,
        parent: Option<&str>,
    ) -> Result<()> {
        let request = self.request(pb::CommitSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            name: name.to_owned(),
            key: key.to_owned(),
            labels,
            parent: parent.unwrap_or_default().to_owned(),
        });
        self.inner.clone().commit(request).await?;
        Ok(())
    }

    /// Remove the snapshot `key`.
    pub async fn remove(&self, key: &str) -> Result<()> {
        let request = self.request(pb::RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        });
        self.inner.clone().remove(request).await?;
        Ok(())
    }

    /// Stat: the info of the snapshot `key`.
    pub async fn stat(&self, key: &str) -> Result<Info> {
        let request = self.request(pb::StatSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        });
        let info = self.inner.clone().stat(request).await?.into_inner().info;
        let info = info.ok_or(Error::Malformed {
            call: "Stat",
            missing: "info",
        })?;
        Ok(convert::info_from_wire(info))
    }

    /// Update the labels of the snapshot `key` by containerd's field-mask rules
    /// ([`strata_core::labels::apply_update`]): no `fieldpaths` or `labels` replace them all
    /// by `labels`; `labels.<k>` sets label `k` from `labels`, or removes it when `labels`
    /// lacks it. Returns the new info.
    pub async fn update(&self, key: &str, labels: Labels, fieldpaths: &[&str]) -> Result<Info> {
        let request = self.request(pb::UpdateSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            info: Some(pb::Info {
                name: key.to_owned(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: fieldpaths.iter().map(|p| (*p).to_owned()).collect(),
            }),
        });
        let info = self.inner.clone().update(request).await?.into_inner().info;
        let info = info.ok_or(Error::Malformed {
            call: "Update",
            missing: "info",
        })?;
        Ok(convert::info_from_wire(info))
    }

    /// Usage of the snapshot `key` alone.
    pub async fn usage(&self, key: &str) -> Result<Usage> {
        let request = self.request(pb::UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_owned(),
        });
        let answer = self.inner.clone().usage(request).await?.into_inner();
        Ok(Usage {
            size: answer.size,
            inodes: answer.inodes,
        })
    }

    /// List: every snapshot matching any of containerd's `filters` (all of them when there
    /// are none), in key order.
    pub async fn list(&self, filters: &[&str]) -> Result<Vec<Info>> {
        let request = self.request(pb::ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        });
        let mut stream = self.inner.clone().list(request).await?.into_inner();
        let mut infos = Vec::new();
        while let Some(batch) = stream.message().await? {
            infos.extend(batch.info.into_iter().map(convert::info_from_wire));
        }
        Ok(infos)
    }

    /// Cleanup: removes the directories the metadata no longer knows.
    pub async fn cleanup(&self) -> Result<()> {
        let request = self.request(pb::CleanupRequest {
            snapshotter: self.snapshotter.clone(),
        });
        self.inner.clone().cleanup(request).await?;
        Ok(())
    }
}

/// A gRPC channel to the unix socket `path`.
pub(crate) async fn channel(path: &Path) -> std::result::Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI is required by the API but unused: every connection goes to the socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}
