//! Hostile and malformed input: a table of bad requests, each answered with the right gRPC
//! code and a message that says what is wrong, with the store and the disk unchanged; raw
//! garbage on the socket; keys that look like paths never reach the filesystem; and the
//! access rules (socket 0660 with its group, nothing world-writable under the root).

mod common;

use std::os::unix::fs::MetadataExt;

use common::{BACKENDS, Daemon, exists, labels, no_labels};
use strata_grpc::client::{self, Code};
use strata_grpc::raw;

/// Sends `body`, whatever it is, as the request message of `method`.
async fn raw_call(d: &Daemon, method: &str, body: Vec<u8>) -> Result<Vec<u8>, client::Error> {
    raw::unary(&d.socket, method, body).await
}

/// At least 40 malformed requests, for both backends: each gets its contract code and a
/// non-empty message, and afterwards the store (List) and the disk (snapshot directories)
/// are exactly as before.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_refused_without_side_effects() {
    let mut tried = 0;
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let c = d.client().await;
        c.prepare("a", "", no_labels()).await.unwrap();
        c.commit("c", "a", no_labels(), None).await.unwrap();
        c.prepare("active", "c", no_labels()).await.unwrap();
        c.view("view", "c", no_labels()).await.unwrap();
        c.prepare("orphan-parentless", "", no_labels())
            .await
            .unwrap();
        let before = d.footprint(&c).await;

        let huge = "k".repeat(1 << 20);
        let long = "k".repeat(4097);
        let big_label = "v".repeat(4096);
        let on = |snapshotter: &str| c.clone().with_snapshotter(snapshotter);

        let refusals: Vec<common::Refusal> = vec![
            (
                "prepare: empty key",
                &[Code::InvalidArgument],
                c.prepare("", "", no_labels()).await.map(drop),
            ),
            (
                "prepare: NUL in key",
                &[Code::InvalidArgument],
                c.prepare("a\0b", "", no_labels()).await.map(drop),
            ),
            (
                "prepare: 1 MiB key",
                &[Code::InvalidArgument],
                c.prepare(&huge, "", no_labels()).await.map(drop),
            ),
            (
                "prepare: 4097-byte key",
                &[Code::InvalidArgument],
                c.prepare(&long, "", no_labels()).await.map(drop),
            ),
            (
                "view: empty key",
                &[Code::InvalidArgument],
                c.view("", "c", no_labels()).await.map(drop),
            ),
            (
                "view: NUL in key",
                &[Code::InvalidArgument],
                c.view("\0", "c", no_labels()).await.map(drop),
            ),
            (
                "commit: empty name",
                &[Code::InvalidArgument],
                c.commit("", "active", no_labels(), None).await.map(drop),
            ),
            (
                "commit: NUL in name",
                &[Code::InvalidArgument],
                c.commit("n\0", "active", no_labels(), None).await.map(drop),
            ),
            (
                "commit: 1 MiB name",
                &[Code::InvalidArgument],
                c.commit(&huge, "active", no_labels(), None).await.map(drop),
            ),
            (
                "commit: empty key",
                &[Code::InvalidArgument],
                c.commit("n", "", no_labels(), None).await.map(drop),
            ),
            (
                "stat: empty key",
                &[Code::InvalidArgument],
                c.stat("").await.map(drop),
            ),
            (
                "stat: NUL in key",
                &[Code::InvalidArgument],
                c.stat("c\0").await.map(drop),
            ),
            (
                "stat: 1 MiB key",
                &[Code::InvalidArgument],
                c.stat(&huge).await.map(drop),
            ),
            (
                "remove: empty key",
                &[Code::InvalidArgument],
                c.remove("").await.map(drop),
            ),
            (
                "mounts: empty key",
                &[Code::InvalidArgument],
                c.mounts("").await.map(drop),
            ),
            (
                "usage: empty key",
                &[Code::InvalidArgument],
                c.usage("").await.map(drop),
            ),
            (
                "update: empty name",
                &[Code::InvalidArgument],
                c.update("", labels(&[]), &[]).await.map(drop),
            ),
            (
                "prepare: missing parent",
                &[Code::NotFound],
                c.prepare("n", "missing", no_labels()).await.map(drop),
            ),
            (
                "prepare: active parent",
                &[Code::InvalidArgument],
                c.prepare("n", "active", no_labels()).await.map(drop),
            ),
            (
                "prepare: view parent",
                &[Code::InvalidArgument],
                c.prepare("n", "view", no_labels()).await.map(drop),
            ),
            (
                "view: active parent",
                &[Code::InvalidArgument],
                c.view("n", "active", no_labels()).await.map(drop),
            ),
            (
                "prepare: NUL in parent",
                &[Code::InvalidArgument],
                c.prepare("n", "c\0", no_labels()).await.map(drop),
            ),
            (
                "prepare: 1 MiB parent",
                &[Code::InvalidArgument],
                c.prepare("n", &huge, no_labels()).await.map(drop),
            ),
            (
                "prepare: existing key",
                &[Code::AlreadyExists],
                c.prepare("active", "", no_labels()).await.map(drop),
            ),
            (
                "view: existing committed name",
                &[Code::AlreadyExists],
                c.view("c", "", no_labels()).await.map(drop),
            ),
            (
                "commit: a view",
                &[Code::FailedPrecondition],
                c.commit("n", "view", no_labels(), None).await.map(drop),
            ),
            (
                "commit: a committed snapshot",
                &[Code::FailedPrecondition],
                c.commit("n", "c", no_labels(), None).await.map(drop),
            ),
            (
                "commit: missing key",
                &[Code::NotFound],
                c.commit("n", "missing", no_labels(), None).await.map(drop),
            ),
            (
                "commit: onto an existing name",
                &[Code::AlreadyExists],
                c.commit("view", "active", no_labels(), None)
                    .await
                    .map(drop),
            ),
            (
                "commit: conflicting parent",
                &[Code::InvalidArgument],
                c.commit("n", "active", labels(&[]), Some("view"))
                    .await
                    .map(drop),
            ),
            (
                "commit: rebase onto a missing parent",
                &[Code::NotFound],
                c.commit("n", "orphan-parentless", labels(&[]), Some("missing"))
                    .await
                    .map(drop),
            ),
            (
                "commit: label past the size limit",
                &[Code::InvalidArgument],
                c.commit("n", "active", labels(&[("k", &big_label)]), None)
                    .await
                    .map(drop),
            ),
            (
                "prepare: label past the size limit",
                &[Code::InvalidArgument],
                c.prepare("n", "", labels(&[("k", &big_label)]))
                    .await
                    .map(drop),
            ),
            (
                "prepare: empty label key",
                &[Code::InvalidArgument],
                c.prepare("n", "", labels(&[("", "v")])).await.map(drop),
            ),
            (
                "prepare: NUL in a label value",
                &[Code::InvalidArgument],
                c.prepare("n", "", labels(&[("k", "a\0")])).await.map(drop),
            ),
            (
                "update: label past the size limit",
                &[Code::InvalidArgument],
                c.update("c", labels(&[("k", &big_label)]), &[])
                    .await
                    .map(drop),
            ),
            (
                "update: no info",
                &[Code::InvalidArgument],
                // The typed client always sends one: an empty message has none.
                raw_call(&d, "Update", vec![]).await.map(drop),
            ),
            (
                "update: fieldpath parent",
                &[Code::InvalidArgument],
                c.update("c", labels(&[]), &["parent"]).await.map(drop),
            ),
            (
                "update: fieldpath name",
                &[Code::InvalidArgument],
                c.update("c", labels(&[]), &["name"]).await.map(drop),
            ),
            (
                "update: fieldpath kind",
                &[Code::InvalidArgument],
                c.update("c", labels(&[]), &["kind"]).await.map(drop),
            ),
            (
                "update: fieldpath labelsx",
                &[Code::InvalidArgument],
                c.update("c", labels(&[]), &["labelsx"]).await.map(drop),
            ),
            (
                "update: missing snapshot",
                &[Code::NotFound],
                c.update("missing", labels(&[]), &[]).await.map(drop),
            ),
            (
                "list: value missing",
                &[Code::InvalidArgument],
                c.list(&["name=="]).await.map(drop),
            ),
            (
                "list: unterminated quote",
                &[Code::InvalidArgument],
                c.list(&["name==\"x"]).await.map(drop),
            ),
            (
                "list: bad regexp",
                &[Code::InvalidArgument],
                c.list(&["name~=/(/"]).await.map(drop),
            ),
            (
                "list: unknown operator",
                &[Code::InvalidArgument],
                c.list(&["name===x"]).await.map(drop),
            ),
            (
                "list: dangling fieldpath",
                &[Code::InvalidArgument],
                c.list(&["labels."]).await.map(drop),
            ),
            (
                "list: NUL in filter",
                &[Code::InvalidArgument],
                c.list(&["name==a\0"]).await.map(drop),
            ),
            (
                "list: one bad filter among good ones",
                &[Code::InvalidArgument],
                c.list(&["kind==active", ","]).await.map(drop),
            ),
            (
                "stat: unknown snapshotter",
                &[Code::InvalidArgument],
                on("zfs").stat("c").await.map(drop),
            ),
            (
                "prepare: path-like snapshotter",
                &[Code::InvalidArgument],
                on("../overlay")
                    .prepare("x", "", no_labels())
                    .await
                    .map(drop),
            ),
            (
                "cleanup: unknown snapshotter",
                &[Code::InvalidArgument],
                on("btrfs").cleanup().await.map(drop),
            ),
            (
                "remove: parent with children",
                &[Code::FailedPrecondition],
                c.remove("c").await.map(drop),
            ),
            (
                "remove: missing",
                &[Code::NotFound],
                c.remove("missing").await.map(drop),
            ),
            (
                "mounts: committed snapshot",
                &[Code::FailedPrecondition],
                c.mounts("c").await.map(drop),
            ),
            (
                "usage: missing",
                &[Code::NotFound],
                c.usage("missing").await.map(drop),
            ),
            // Below: not protobuf at all, or not a method. Protobuf parse errors are INTERNAL
            // per the gRPC status-code specification (tonic follows it).
            (
                "raw: unknown method",
                &[Code::Unimplemented],
                raw_call(&d, "Rename", vec![]).await.map(drop),
            ),
            (
                "raw: garbage body",
                &[Code::Internal],
                raw_call(&d, "Prepare", vec![0xff, 0xff, 0xff, 0xff])
                    .await
                    .map(drop),
            ),
            (
                "raw: key field with a varint wire type",
                &[Code::Internal],
                raw_call(&d, "Prepare", vec![0x10, 0x01]).await.map(drop),
            ),
            (
                "raw: key that is not UTF-8",
                &[Code::Internal],
                raw_call(&d, "Prepare", vec![0x12, 0x02, 0xc3, 0x28])
                    .await
                    .map(drop),
            ),
            (
                "raw: truncated length-delimited field",
                &[Code::Internal],
                raw_call(&d, "Stat", vec![0x12, 0x10, b'a']).await.map(drop),
            ),
            (
                "raw: 5 MiB message",
                &[Code::ResourceExhausted, Code::OutOfRange, Code::Internal],
                raw_call(&d, "Stat", {
                    let mut m = vec![0x12, 0x80, 0x80, 0x40];
                    m.extend(std::iter::repeat_n(b'k', 5 << 20));
                    m
                })
                .await
                .map(drop),
            ),
        ];
        tried += d
            .assert_refused_without_side_effects(&c, &before, refusals)
            .await;
    }
    eprintln!("malformed requests tried: {tried}");
    assert!(tried >= 80, "at least 40 per backend");
}

/// Bytes that are not HTTP/2, and an HTTP/2 preface followed by garbage, only cost their own
/// connection: the daemon keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_socket() {
    use std::io::{Read, Write};
    let d = Daemon::start("overlay");
    let garbage: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0u8; 4096],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x01\x00\x00\x00\x00",
    ];
    for bytes in garbage {
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let _ = s.write_all(bytes);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let c = d.client().await;
    c.prepare("still-alive", "", no_labels())
        .await
        .expect("the daemon still serves");
}

/// Keys that look like paths are only keys: nothing is created outside the root, and every
/// directory under `snapshots/` is named by a numeric id.
#[tokio::test(flavor = "multi_thread")]
async fn path_like_keys_stay_keys() {
    let d = Daemon::start("native");
    let c = d.client().await;
    let outside = d.dir.path().join("escaped");
    let keys = [
        "../../etc/strata-escape".to_string(),
        format!("../../../../..{}", outside.display()),
        "/absolute/key".to_string(),
        "./.".to_string(),
        "..".to_string(),
    ];
    for key in &keys {
        c.prepare(key, "", no_labels()).await.unwrap();
        c.commit(&format!("{key}/committed"), key, no_labels(), None)
            .await
            .unwrap();
        c.view(key, &format!("{key}/committed"), no_labels())
            .await
            .unwrap();
    }
    assert!(!exists(std::path::Path::new("/etc/strata-escape")));
    assert!(!exists(&outside));
    for name in d.snapshot_dirs() {
        assert!(name.parse::<u64>().is_ok(), "unexpected directory {name}");
    }
    assert_eq!(common::names(&c, &[]).await.len(), keys.len() * 2);
}

/// The socket is 0660 and takes the configured group; nothing Strata itself writes under the
/// root is world-writable (snapshot content keeps whatever modes its image gives it).
#[tokio::test(flavor = "multi_thread")]
async fn access_rules() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "socket_group = \"daemon\"\n").unwrap();
    let d = Daemon::start_with("overlay", &["--config", config.to_str().unwrap()]);
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);
    let daemon_gid = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("daemon:x:")
                .and_then(|r| r.split(':').next())
                .map(|g| g.parse::<u32>().unwrap())
        })
        .expect("group daemon");
    assert_eq!(meta.gid(), daemon_gid);

    let c = d.client().await;
    let m = c.prepare("a", "", no_labels()).await.unwrap();
    std::fs::write(common::writable_dir(&m).join("f"), b"x").unwrap();
    c.commit("A", "a", no_labels(), None).await.unwrap();
    c.prepare("b", "A", no_labels()).await.unwrap();
    c.view("v", "A", no_labels()).await.unwrap();
    // Everything but snapshot content (`snapshots/<id>/fs/...`).
    let mut stack = vec![d.root.clone()];
    let mut checked = 0;
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(
            meta.mode() & 0o002,
            0,
            "{} is world-writable",
            path.display()
        );
        checked += 1;
        if meta.is_dir() && path.file_name().is_none_or(|n| n != "fs") {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    assert!(checked > 8);
}
