//! A client of the snapshots service over a unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub use crate::proto::snapshots::snapshots_client::SnapshotsClient;

/// Connects to the snapshots service listening on the unix socket `path`.
pub async fn connect(path: &Path) -> Result<SnapshotsClient<Channel>, tonic::transport::Error> {
    Ok(SnapshotsClient::new(channel(path).await?))
}

/// A gRPC channel to the unix socket `path`, for clients other than [`SnapshotsClient`]
/// (tests sending raw frames).
pub async fn channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
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
