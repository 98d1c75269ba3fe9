//! The daemon as the command line sees it: one method per RPC, taking and returning domain
//! types, with every request addressed to the chosen backend.

use std::path::{Path, PathBuf};

use strata_core::snapshot::Labels;
use strata_core::{Info, Mount, Usage};
use strata_grpc::client::SnapshotsClient;
use strata_grpc::convert;
use strata_grpc::proto::snapshots as pb;
use tonic::Status;
use tonic::transport::Channel;

use super::CliError;
use super::args::ClientArgs;

/// A connection to the daemon, addressing one backend.
pub struct Client {
    inner: SnapshotsClient<Channel>,
    snapshotter: String,
}

/// Turns a failed RPC into the one-line error the command prints.
pub trait Context<T> {
    /// Names what was being done (`info base`), for `strata: info base: NotFound: …`.
    fn what(self, what: impl FnOnce() -> String) -> Result<T, CliError>;
}

impl<T> Context<T> for Result<T, Status> {
    fn what(self, what: impl FnOnce() -> String) -> Result<T, CliError> {
        self.map_err(|status| rpc_error(what(), &status))
    }
}

/// The error for `status`, answered to what was being done.
pub fn rpc_error(what: String, status: &Status) -> CliError {
    CliError::Rpc {
        what,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

impl Client {
    /// Connects to the daemon at `args.address`.
    pub async fn connect(args: &ClientArgs) -> Result<Client, CliError> {
        let path: &Path = &args.address;
        // tonic's own error says only "transport error"; a plain connect names the cause.
        if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
            return Err(CliError::Connect {
                address: path.to_owned(),
                reason: e.to_string(),
            });
        }
        let inner = strata_grpc::client::connect(path)
            .await
            .map_err(|e| CliError::Connect {
                address: PathBuf::from(path),
                reason: e.to_string(),
            })?;
        Ok(Client {
            inner,
            snapshotter: args.snapshotter.clone(),
        })
    }

    /// List with containerd filters (OR-ed), every matching snapshot in key order.
    pub async fn list(&mut self, filters: Vec<String>) -> Result<Vec<Info>, Status> {
        let mut stream = self
            .inner
            .list(pb::ListSnapshotsRequest {
                snapshotter: self.snapshotter.clone(),
                filters,
            })
            .await?
            .into_inner();
        let mut infos = Vec::new();
        while let Some(batch) = stream.message().await? {
            infos.extend(batch.info.into_iter().map(convert::info_from_wire));
        }
        Ok(infos)
    }

    /// Stat.
    pub async fn stat(&mut self, key: &str) -> Result<Info, Status> {
        let info = self
            .inner
            .stat(pb::StatSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            })
            .await?
            .into_inner()
            .info
            .ok_or_else(|| Status::internal("the daemon's Stat answer carries no info"))?;
        Ok(convert::info_from_wire(info))
    }

    /// Usage.
    pub async fn usage(&mut self, key: &str) -> Result<Usage, Status> {
        let r = self
            .inner
            .usage(pb::UsageRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            })
            .await?
            .into_inner();
        Ok(Usage {
            size: r.size,
            inodes: r.inodes,
        })
    }

    /// Prepare.
    pub async fn prepare(
        &mut self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>, Status> {
        let r = self
            .inner
            .prepare(pb::PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
                parent: parent.to_owned(),
                labels,
            })
            .await?;
        Ok(convert::mounts_from_wire(r.into_inner().mounts))
    }

    /// View.
    pub async fn view(
        &mut self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>, Status> {
        let r = self
            .inner
            .view(pb::ViewSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
                parent: parent.to_owned(),
                labels,
            })
            .await?;
        Ok(convert::mounts_from_wire(r.into_inner().mounts))
    }

    /// Mounts.
    pub async fn mounts(&mut self, key: &str) -> Result<Vec<Mount>, Status> {
        let r = self
            .inner
            .mounts(pb::MountsRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            })
            .await?;
        Ok(convert::mounts_from_wire(r.into_inner().mounts))
    }

    /// Commit.
    pub async fn commit(&mut self, name: &str, key: &str, labels: Labels) -> Result<(), Status> {
        self.inner
            .commit(pb::CommitSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                name: name.to_owned(),
                key: key.to_owned(),
                labels,
                parent: String::new(),
            })
            .await?;
        Ok(())
    }

    /// Remove.
    pub async fn remove(&mut self, key: &str) -> Result<(), Status> {
        self.inner
            .remove(pb::RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: key.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// Update of the labels named in `changes` only (`labels.<k>` field paths): a non-empty
    /// value sets a label, an empty one removes it.
    pub async fn update_labels(&mut self, key: &str, changes: Labels) -> Result<Info, Status> {
        let paths = changes.keys().map(|k| format!("labels.{k}")).collect();
        let info = self
            .inner
            .update(pb::UpdateSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                info: Some(pb::Info {
                    name: key.to_owned(),
                    labels: changes,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            })
            .await?
            .into_inner()
            .info
            .ok_or_else(|| Status::internal("the daemon's Update answer carries no info"))?;
        Ok(convert::info_from_wire(info))
    }

    /// Cleanup.
    pub async fn cleanup(&mut self) -> Result<(), Status> {
        self.inner
            .cleanup(pb::CleanupRequest {
                snapshotter: self.snapshotter.clone(),
            })
            .await?;
        Ok(())
    }
}
