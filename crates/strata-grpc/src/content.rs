//! A client of containerd's content store (`containerd.services.content.v1.Content`) over
//! containerd's own socket: a proxy differ receives descriptors, not bytes, and reads and
//! writes blobs through the daemon that owns them.
//!
//! Every call names its namespace in the `containerd-namespace` header, as containerd's own
//! clients do.
//!
//! Reading a blob need not stream it through containerd: when containerd's introspection
//! service names the root of its local content store and this process can read the blob's
//! file there, the blob is read from that file, as containerd's own applier does, after an
//! `Info` in the request's namespace has confirmed the namespace holds it (namespaces share
//! the files, not the right to them). The applier verifies the digest of what it reads
//! either way.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::proto::content as pb;
use crate::proto::content::content_client::ContentClient;
use crate::proto::introspection as intro;
use crate::proto::introspection::introspection_client::IntrospectionClient;
use crate::proto::leases as leases_pb;
use crate::proto::leases::leases_client::LeasesClient;

/// The gRPC header carrying containerd's namespace.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The gRPC header naming the lease that holds what a request creates.
pub const LEASE_HEADER: &str = "containerd-lease";
/// containerd's label giving a lease its expiry (RFC 3339).
const LEASE_EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// How long the lease Strata takes for a blob it writes keeps the blob from containerd's
/// garbage collector: the time its client has to reference it (containerd's own clients
/// lease for 24 hours).
const LEASE_HOLD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Bytes per message when writing a blob (containerd's clients use 1 MiB as well).
const WRITE_CHUNK: usize = 1 << 20;

/// containerd's content store, reached over its socket (connected on first use).
#[derive(Debug)]
pub struct ContentStore {
    address: PathBuf,
    channel: OnceCell<Channel>,
    /// The `blobs` directory of containerd's local content store, if this process can read
    /// it (asked once, on first use).
    local: OnceCell<Option<PathBuf>>,
}

/// A blob being read from the content store: a blocking [`Read`], to be used off the async
/// runtime (the applier's threads).
pub struct BlobReader(Source);

enum Source {
    /// The blob's file in containerd's content store.
    Local(std::fs::File),
    /// The blob streamed by containerd's `Read`.
    Streamed(Streamed),
}

impl BlobReader {
    /// Whether the blob is read from its file rather than streamed by containerd.
    pub fn is_local(&self) -> bool {
        matches!(self.0, Source::Local(_))
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Source::Local(file) => file.read(buf),
            Source::Streamed(stream) => stream.read(buf),
        }
    }
}

/// Chunks of a blob from containerd's `Read` stream.
struct Streamed {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for Streamed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What a finished write tells the content store when committing.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The digest of everything written.
    pub digest: String,
    /// Bytes written.
    pub size: u64,
    /// Labels of the committed blob.
    pub labels: BTreeMap<String, String>,
}

fn with_namespace<T>(namespace: &str, message: T) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let value = namespace.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "namespace {namespace:?} is not a valid header value"
        ))
    })?;
    request.metadata_mut().insert(NAMESPACE_HEADER, value);
    Ok(request)
}

impl ContentStore {
    /// The content store of the containerd listening on `address`.
    pub fn new(address: &Path) -> ContentStore {
        ContentStore {
            address: address.to_owned(),
            channel: OnceCell::new(),
            local: OnceCell::new(),
        }
    }

    /// The socket this store is reached at.
    pub fn address(&self) -> &Path {
        &self.address
    }

    async fn client(&self) -> Result<ContentClient<Channel>, Status> {
        Ok(ContentClient::new(self.channel().await?))
    }

    async fn channel(&self) -> Result<Channel, Status> {
        let channel = self
            .channel
            .get_or_try_init(|| crate::client::channel(&self.address))
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "cannot reach containerd's content store at {}: {e}",
                    self.address.display()
                ))
            })?;
        Ok(channel.clone())
    }

    /// The `blobs` directory of containerd's local content store: the `root` its content
    /// plugin exports, if this process can read it. `None` (blobs are then streamed) when
    /// containerd does not say or the directory is not visible here, e.g. from another
    /// mount namespace.
    async fn local_blobs(&self) -> Option<&Path> {
        self.local
            .get_or_init(|| async {
                let found = self.ask_content_root().await;
                match &found {
                    Ok(Some(blobs)) => tracing::info!(
                        blobs = %blobs.display(),
                        "reading layers from containerd's content store directly"
                    ),
                    Ok(None) => tracing::info!(
                        "containerd's content store is not readable here: layers are streamed"
                    ),
                    Err(status) => tracing::info!(
                        error = %status.message(),
                        "containerd's introspection service did not answer: layers are streamed"
                    ),
                }
                found.ok().flatten()
            })
            .await
            .as_deref()
    }

    async fn ask_content_root(&self) -> Result<Option<PathBuf>, Status> {
        let mut client = IntrospectionClient::new(self.channel().await?);
        let plugins = client
            .plugins(intro::PluginsRequest {
                filters: vec!["type==io.containerd.content.v1,id==content".to_owned()],
            })
            .await?
            .into_inner()
            .plugins;
        let Some(root) = plugins.iter().find_map(|p| p.exports.get("root")) else {
            return Ok(None);
        };
        let blobs = Path::new(root).join("blobs");
        Ok(blobs.is_dir().then_some(blobs))
    }

    /// The file of blob `digest` in containerd's local content store, opened, once an `Info`
    /// in `namespace` has confirmed the namespace holds it (`NotFound` otherwise). `None`
    /// when there is no readable local store or no such file: the blob is then streamed.
    async fn local_blob(
        &self,
        namespace: &str,
        digest: &str,
    ) -> Result<Option<std::fs::File>, Status> {
        let Some(blobs) = self.local_blobs().await else {
            return Ok(None);
        };
        // Only a well-formed sha256 digest names a file: nothing else reaches the path.
        let Some(hex) = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        else {
            return Ok(None);
        };
        self.client()
            .await?
            .info(with_namespace(
                namespace,
                pb::InfoRequest {
                    digest: digest.to_owned(),
                },
            )?)
            .await?;
        let path = blobs.join("sha256").join(hex);
        match std::fs::File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "blob file not readable: streaming it");
                Ok(None)
            }
        }
    }

    /// Starts reading blob `digest` of `namespace`: from its file when the store is local
    /// (see the module's documentation), else streamed. `NotFound` (from containerd) if the
    /// namespace does not have it; the first bytes are awaited so that such errors come
    /// before any work starts.
    pub async fn reader(&self, namespace: &str, digest: &str) -> Result<BlobReader, Status> {
        if let Some(file) = self.local_blob(namespace, digest).await? {
            return Ok(BlobReader(Source::Local(file)));
        }
        let mut client = self.client().await?;
        let request = with_namespace(
            namespace,
            pb::ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            },
        )?;
        let mut stream = client.read(request).await?.into_inner();
        let first = stream.message().await?;
        let (tx, rx) = mpsc::channel(8);
        if let Some(first) = first {
            let _ = tx.send(Ok(first.data.to_vec())).await;
            tokio::spawn(async move {
                loop {
                    let item = match stream.message().await {
                        Ok(Some(m)) => Ok(m.data.to_vec()),
                        Ok(None) => break,
                        Err(status) => Err(io::Error::other(format!(
                            "reading from containerd's content store: {}",
                            status.message()
                        ))),
                    };
                    let failed = item.is_err();
                    // The reader went away (the apply failed or was cancelled).
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            });
        }
        Ok(BlobReader(Source::Streamed(Streamed {
            rx,
            current: Vec::new(),
            pos: 0,
        })))
    }

    /// Creates a lease in `namespace` that expires after [`LEASE_HOLD`], for what Strata
    /// writes on a client's behalf. containerd does not pass its client's lease to a proxy
    /// differ, and a blob no lease holds may be collected before the client references it.
    pub async fn lease(&self, namespace: &str) -> Result<String, Status> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = std::time::SystemTime::now();
        let id = format!(
            "strata-diff-{}-{}-{}",
            std::process::id(),
            now.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let expires = strata_core::time::rfc3339(now + LEASE_HOLD, false);
        let mut client = LeasesClient::new(self.channel().await?);
        client
            .create(with_namespace(
                namespace,
                leases_pb::CreateRequest {
                    id: id.clone(),
                    labels: BTreeMap::from([(LEASE_EXPIRE_LABEL.to_owned(), expires)]),
                },
            )?)
            .await?;
        Ok(id)
    }

    /// Writes a blob under `reference`, held by `lease`, from the chunks of `data`, then
    /// commits it with what `commit` delivers once the data is complete. A blob that already exists is not an
    /// error: its labels are completed with the committed ones instead.
    pub async fn write(
        &self,
        namespace: &str,
        lease: &str,
        reference: &str,
        mut data: mpsc::Receiver<Vec<u8>>,
        commit: oneshot::Receiver<Commit>,
    ) -> Result<(), Status> {
        let mut client = self.client().await?;
        let (tx, rx) = mpsc::channel::<pb::WriteContentRequest>(4);
        let reference = reference.to_owned();
        let feeder_ref = reference.clone();
        let feeder = tokio::spawn(async move {
            let base = pb::WriteContentRequest {
                r#ref: feeder_ref,
                ..Default::default()
            };
            tx.send(pb::WriteContentRequest {
                action: pb::WriteAction::Stat as i32,
                ..base.clone()
            })
            .await
            .ok()?;
            let mut offset = 0i64;
            while let Some(chunk) = data.recv().await {
                for piece in chunk.chunks(WRITE_CHUNK) {
                    tx.send(pb::WriteContentRequest {
                        action: pb::WriteAction::Write as i32,
                        offset,
                        data: piece.to_vec(),
                        ..base.clone()
                    })
                    .await
                    .ok()?;
                    offset += piece.len() as i64;
                }
            }
            let commit = commit.await.ok()?;
            tx.send(pb::WriteContentRequest {
                action: pb::WriteAction::Commit as i32,
                offset,
                total: commit.size as i64,
                expected: commit.digest.clone(),
                labels: commit.labels.clone(),
                ..base
            })
            .await
            .ok()?;
            Some(commit)
        });
        let mut request = with_namespace(namespace, ReceiverStream::new(rx))?;
        request.metadata_mut().insert(
            LEASE_HEADER,
            lease.parse().map_err(|_| {
                Status::invalid_argument(format!("lease {lease:?} is not a valid header value"))
            })?,
        );
        let mut responses = client.write(request).await?.into_inner();
        let mut committed = false;
        let outcome = loop {
            match responses.message().await {
                Ok(Some(m)) => {
                    if m.action == pb::WriteAction::Commit as i32 {
                        committed = true;
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(status) => break Err(status),
            }
        };
        let commit = feeder.await.ok().flatten();
        match (outcome, commit) {
            (Ok(()), Some(_)) if committed => Ok(()),
            (Err(status), Some(commit)) if status.code() == Code::AlreadyExists => {
                self.add_labels(namespace, &commit.digest, &commit.labels)
                    .await
            }
            (Err(status), _) => Err(status),
            (Ok(()), _) => Err(Status::aborted(format!(
                "content write {reference:?} ended before its commit"
            ))),
        }
    }

    /// Adds `labels` the blob `digest` lacks (the walking differ does the same for the
    /// `containerd.io/uncompressed` label of a blob that already existed).
    async fn add_labels(
        &self,
        namespace: &str,
        digest: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), Status> {
        let mut client = self.client().await?;
        let info = client
            .info(with_namespace(
                namespace,
                pb::InfoRequest {
                    digest: digest.to_owned(),
                },
            )?)
            .await?
            .into_inner()
            .info
            .unwrap_or_default();
        let missing: Vec<String> = labels
            .keys()
            .filter(|k| !info.labels.contains_key(*k))
            .map(|k| format!("labels.{k}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut updated = info.clone();
        updated.labels.extend(labels.clone());
        client
            .update(with_namespace(
                namespace,
                pb::UpdateRequest {
                    info: Some(updated),
                    update_mask: Some(prost_types::FieldMask { paths: missing }),
                },
            )?)
            .await?;
        Ok(())
    }
}
