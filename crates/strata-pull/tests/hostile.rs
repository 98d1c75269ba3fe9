//! The pull path against a hostile registry: an HTTP server in the test (std `TcpListener`
//! on 127.0.0.1) serves a real image's manifest and config and misbehaves on request —
//! endless or oversized answers, a redirect loop, a stalled body, no answer at all. Each case
//! must end quickly with a clear error, and a Prepare through [`Remote`] on a real native
//! backend must fall back to an ordinary active snapshot and leave no pulled or half-built
//! snapshot behind. Also: a good layer is pulled once and shared by a second namespace, and
//! half-built extraction snapshots (what a crash leaves) are swept on start and by Cleanup.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata_backend::native::Native;
use strata_backend::{Engine, EngineOptions};
use strata_core::snapshot::Labels;
use strata_core::{Ctx, Error, Filter, Kind, Snapshotter};
use strata_layer::Digest;
use strata_pull::jobs::{IMAGE_LAYERS, IMAGE_REF, LAYER_DIGEST, MANIFEST_DIGEST, SNAPSHOT_REF};
use strata_pull::reference::Reference;
use strata_pull::registry::Registry;
use strata_pull::{PullConfig, PullError, PullMetrics, Puller, Remote};

/// What the server does with a request for the layer blob (or, for `manifest`, the
/// manifest).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Misbehaviour {
    /// Serve it as it is.
    None,
    /// 200 without Content-Length, then bytes until the client goes away.
    Endless,
    /// 302 to the same URL, forever.
    RedirectLoop,
    /// Headers and half the body, then nothing until `release` (at most 20 s).
    Stall,
    /// Accept the connection and never answer (at most 20 s).
    Silent,
}

struct Server {
    port: u16,
    manifest: Vec<u8>,
    manifest_digest: Digest,
    layer_digest: Digest,
    chain: Digest,
    blob_hits: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

/// One uncompressed layer holding `hello.txt`, and its image: (manifest, config, layer).
fn image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    let data = b"hello from a hostile registry\n";
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append_data(&mut h, "hello.txt", &data[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let diff = Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},
        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{diff}","size":{}}}]}}"#,
        Digest::of(&config),
        config.len(),
        layer.len()
    )
    .into_bytes();
    (manifest, config, layer)
}

fn respond(mut s: TcpStream, status: &str, headers: &str, body: &[u8]) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(body);
}

fn handle(
    mut s: TcpStream,
    (manifest, config, layer): &(Vec<u8>, Vec<u8>, Vec<u8>),
    on_manifest: Misbehaviour,
    on_blob: Misbehaviour,
    hits: &AtomicUsize,
    release: &AtomicBool,
) {
    let mut head = String::new();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        head.push_str(&line);
        line.clear();
    }
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let (body, how) = if path.contains("/manifests/") {
        (manifest, on_manifest)
    } else if path.ends_with(Digest::of(config).as_str()) {
        (config, Misbehaviour::None)
    } else if path.ends_with(Digest::of(layer).as_str()) {
        hits.fetch_add(1, Ordering::SeqCst);
        (layer, on_blob)
    } else {
        return respond(s, "404 Not Found", "", b"");
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    match how {
        Misbehaviour::None => respond(s, "200 OK", "", body),
        Misbehaviour::RedirectLoop => {
            respond(s, "302 Found", &format!("Location: {path}\r\n"), b"")
        }
        Misbehaviour::Endless => {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 64 << 10];
            while Instant::now() < deadline && s.write_all(&chunk).is_ok() {}
        }
        Misbehaviour::Stall => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body[..body.len() / 2]);
            let _ = s.flush();
            while Instant::now() < deadline && !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = s.write_all(&body[body.len() / 2..]);
        }
        Misbehaviour::Silent => {
            while Instant::now() < deadline && !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A registry on 127.0.0.1 serving the test image, misbehaving as told.
fn serve(on_manifest: Misbehaviour, on_blob: Misbehaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files = Arc::new(image());
    let (manifest, _, layer) = &*files;
    let blob_hits = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let server = Server {
        port,
        manifest: manifest.clone(),
        manifest_digest: Digest::of(manifest),
        layer_digest: Digest::of(layer),
        chain: Digest::of(layer),
        blob_hits: Arc::clone(&blob_hits),
        release: Arc::clone(&release),
    };
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (files, hits, release) = (
                Arc::clone(&files),
                Arc::clone(&blob_hits),
                Arc::clone(&release),
            );
            std::thread::spawn(move || handle(s, &files, on_manifest, on_blob, &hits, &release));
        }
    });
    server
}

fn config(server: &Server, hosts: &Path) -> PullConfig {
    PullConfig {
        hosts_dir: hosts.to_owned(),
        plain_http: vec![format!("127.0.0.1:{}", server.port)],
        retries: 0,
        connect_timeout_secs: 1,
        read_timeout_secs: 1,
        max_redirects: 3,
        max_manifest_bytes: 64 << 10,
        ..PullConfig::default()
    }
}

impl Server {
    fn reference(&self) -> String {
        format!("127.0.0.1:{}/test/img:1", self.port)
    }

    /// The labels containerd's snapshotter-info handler puts on the layer's Prepare.
    fn labels(&self) -> Labels {
        let mut l = Labels::new();
        l.insert(SNAPSHOT_REF.into(), self.chain.to_string());
        l.insert(IMAGE_REF.into(), self.reference());
        l.insert(MANIFEST_DIGEST.into(), self.manifest_digest.to_string());
        l.insert(LAYER_DIGEST.into(), self.layer_digest.to_string());
        l.insert(IMAGE_LAYERS.into(), self.layer_digest.to_string());
        l
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    backend: Arc<dyn Snapshotter>,
    remote: Remote,
}

fn setup(server: &Server, read_timeout_secs: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) =
        Engine::open(&dir.path().join("native"), Native, EngineOptions::default()).unwrap();
    let backend: Arc<dyn Snapshotter> = Arc::new(engine);
    let mut config = config(server, &dir.path().join("certs.d"));
    config.read_timeout_secs = read_timeout_secs;
    let puller = Puller::new(
        Registry::new(config).unwrap(),
        Arc::new(PullMetrics::default()),
    );
    let remote = Remote::new(Arc::clone(&backend), puller);
    Setup {
        _dir: dir,
        backend,
        remote,
    }
}

fn names(backend: &Arc<dyn Snapshotter>) -> Vec<(String, Kind)> {
    let mut all = Vec::new();
    backend
        .walk(&Ctx::background(), &Filter::always(), &mut |i| {
            all.push((i.name, i.kind));
            Ok(())
        })
        .unwrap();
    all
}

/// A Prepare with the remote-snapshot labels against a blob that misbehaves falls back: an
/// ordinary active snapshot, nothing pulled, nothing half-built, within `limit`.
fn falls_back(on_blob: Misbehaviour, limit: Duration) {
    let server = serve(Misbehaviour::None, on_blob);
    let s = setup(&server, 1);
    let key = "default/1/extract-1-layer";
    let start = Instant::now();
    let mounts = s
        .remote
        .prepare(&Ctx::background(), key, "", server.labels())
        .unwrap_or_else(|e| panic!("{on_blob:?}: the Prepare must fall back, got {e}"));
    assert!(
        start.elapsed() < limit,
        "{on_blob:?}: took {:?}",
        start.elapsed()
    );
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        names(&s.backend),
        vec![(key.to_owned(), Kind::Active)],
        "{on_blob:?}"
    );
    assert!(
        server.blob_hits.load(Ordering::SeqCst) >= 1,
        "{on_blob:?}: blob never asked for"
    );
    server.release.store(true, Ordering::SeqCst);
}

/// The control: a well-behaved registry's layer is pulled, committed as `pull/<chain>` and
/// answered AlreadyExists; a second namespace's Prepare of the same layer gets
/// AlreadyExists without another download.
#[test]
fn good_layer_is_pulled_once_for_every_namespace() {
    let server = serve(Misbehaviour::None, Misbehaviour::None);
    let s = setup(&server, 5);
    let ctx = Ctx::background();
    for ns in ["a", "b"] {
        let key = format!("{ns}/1/extract-1-layer");
        match s.remote.prepare(&ctx, &key, "", server.labels()) {
            Err(Error::AlreadyExists { key }) => assert_eq!(key, server.chain.to_string()),
            other => panic!("namespace {ns}: expected AlreadyExists, got {other:?}"),
        }
    }
    let name = format!("pull/{}", server.chain);
    assert_eq!(names(&s.backend), vec![(name.clone(), Kind::Committed)]);
    let info = s.backend.stat(&ctx, &name).unwrap();
    assert_eq!(info.labels[SNAPSHOT_REF], server.chain.to_string());
    assert_eq!(server.blob_hits.load(Ordering::SeqCst), 1);
}

/// A body that never ends stops at the descriptor's size.
#[test]
fn endless_blob_is_bounded() {
    let server = serve(Misbehaviour::None, Misbehaviour::Endless);
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(config(&server, dir.path())).unwrap();
    let r = Reference::parse(&server.reference()).unwrap();
    let mut buf = Vec::new();
    let err = registry
        .blob(&r, &server.layer_digest, 3072)
        .unwrap()
        .read_to_end(&mut buf)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("longer than the descriptor's size"),
        "{err}"
    );
    assert!(buf.len() <= 3072);
    falls_back(Misbehaviour::Endless, Duration::from_secs(10));
}

/// A manifest past `max_manifest_bytes` (here an endless one) is refused.
#[test]
fn oversized_manifest_is_refused() {
    let server = serve(Misbehaviour::Endless, Misbehaviour::None);
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(config(&server, dir.path())).unwrap();
    let r = Reference::parse(&server.reference()).unwrap();
    let start = Instant::now();
    let err = registry.manifest(&r, &server.manifest_digest).unwrap_err();
    assert!(matches!(err, PullError::BadAnswer { .. }), "{err}");
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Through the Prepare: nothing is created but containerd's own snapshot.
    let s = setup(&server, 1);
    s.remote
        .prepare(
            &Ctx::background(),
            "default/1/extract-1-layer",
            "",
            server.labels(),
        )
        .unwrap();
    assert_eq!(names(&s.backend).len(), 1);
    assert!(server.manifest.len() < 65536);
}

/// Redirects are followed at most `max_redirects` times.
#[test]
fn redirect_loop_is_bounded() {
    let server = serve(Misbehaviour::None, Misbehaviour::RedirectLoop);
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(config(&server, dir.path())).unwrap();
    let r = Reference::parse(&server.reference()).unwrap();
    let err = registry.blob(&r, &server.layer_digest, 10).err().unwrap();
    assert!(err.to_string().contains("more than 3 redirects"), "{err}");
    falls_back(Misbehaviour::RedirectLoop, Duration::from_secs(10));
}

/// A body that stops mid-way (slow loris) times out after `read_timeout_secs`, and the
/// half-built extraction snapshot is removed.
#[test]
fn stalled_body_times_out() {
    falls_back(Misbehaviour::Stall, Duration::from_secs(8));
}

/// A server that accepts and never answers times out too.
#[test]
fn silent_server_times_out() {
    falls_back(Misbehaviour::Silent, Duration::from_secs(8));
}

/// What a crash leaves — an extraction snapshot with part of a layer in it — is removed when
/// the daemon starts (its `sweep`) and by Cleanup; one a job is still applying into is not.
#[test]
fn half_built_layers_are_swept() {
    let server = serve(Misbehaviour::None, Misbehaviour::Stall);
    let s = setup(&server, 10);
    let ctx = Ctx::background();
    // A crash mid-apply: the extraction snapshot, a file half written in it.
    let left = format!("pull-extract/{}", server.chain);
    let mounts = s.backend.prepare(&ctx, &left, "", Labels::new()).unwrap();
    std::fs::write(Path::new(&mounts[0].source).join("half"), b"x").unwrap();
    s.backend
        .prepare(&ctx, "default/pull-extract/sha256:old", "", Labels::new())
        .unwrap();
    s.backend
        .prepare(&ctx, "default/1/other", "", Labels::new())
        .unwrap();
    assert_eq!(s.remote.sweep(&ctx).unwrap(), 2);
    assert_eq!(
        names(&s.backend),
        vec![("default/1/other".to_owned(), Kind::Active)]
    );

    // A job applying into its extraction snapshot (its blob stalled): Cleanup keeps it.
    let remote = Arc::new(s.remote);
    let labels = server.labels();
    let pulling = {
        let remote = Arc::clone(&remote);
        std::thread::spawn(move || {
            remote.prepare(&Ctx::background(), "default/2/extract-2-layer", "", labels)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.backend.stat(&ctx, &left).is_err() {
        assert!(Instant::now() < deadline, "the job never created {left}");
        std::thread::sleep(Duration::from_millis(10));
    }
    remote.cleanup(&ctx).unwrap();
    // containerd's garbage collector cannot take it either.
    match remote.remove(&ctx, &left) {
        Err(Error::FailedPrecondition(why)) => assert!(why.contains("being pulled"), "{why}"),
        other => panic!("removing a layer being pulled: {other:?}"),
    }
    assert!(
        s.backend.stat(&ctx, &left).is_ok(),
        "Cleanup removed a layer being pulled"
    );
    server.release.store(true, Ordering::SeqCst);
    match pulling.join().unwrap() {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected the stalled layer to finish, got {other:?}"),
    }
    assert!(s.backend.stat(&ctx, &left).is_err());
}
