//! Every RPC of the snapshots service, over the real daemon's socket, for both backends:
//! the contract's success paths, each error code containerd relies on, and that a refused
//! request changes nothing.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{BACKENDS, Daemon, labels, list_all, names, no_labels, writable_dir};
use strata_core::Kind;
use strata_grpc::client::Code;

/// Prepare → write → Commit → View → Usage → Remove, with the kinds, parents and mounts
/// containerd expects along the way.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let c = d.client().await;
        let mounts = c.prepare("base-active", "", no_labels()).await.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            mounts[0].kind, "bind",
            "{backend}: a layer without parent is a bind"
        );
        assert!(mounts[0].options.contains(&"rw".to_string()));
        assert_eq!(c.mounts("base-active").await.unwrap(), mounts);
        let dir = writable_dir(&mounts);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);
        std::fs::write(dir.join("hello"), b"world").unwrap();

        c.commit("base", "base-active", no_labels(), None)
            .await
            .unwrap();
        let info = c.stat("base").await.unwrap();
        assert_eq!(info.kind, Kind::Committed);
        assert_eq!(
            c.stat("base-active").await.unwrap_err().code(),
            Code::NotFound
        );

        let top = c.prepare("top", "base", no_labels()).await.unwrap();
        let info = c.stat("top").await.unwrap();
        assert_eq!((info.kind, info.parent.as_str()), (Kind::Active, "base"));
        match *backend {
            "overlay" => {
                assert_eq!(top[0].kind, "overlay");
                let lower = top[0]
                    .options
                    .iter()
                    .find(|o| o.starts_with("lowerdir="))
                    .unwrap();
                assert!(
                    lower.ends_with("/fs") && lower.starts_with("lowerdir=/"),
                    "{lower}"
                );
            }
            _ => {
                assert_eq!(top[0].kind, "bind");
                let copied = std::path::Path::new(&top[0].source).join("hello");
                assert_eq!(
                    std::fs::read(copied).unwrap(),
                    b"world",
                    "native copies the parent"
                );
            }
        }
        let view = c.view("v", "base", no_labels()).await.unwrap();
        assert!(
            view[0].options.contains(&"ro".to_string()),
            "{backend}: {view:?}"
        );
        let info = c.stat("v").await.unwrap();
        assert_eq!(info.kind, Kind::View);

        let usage = c.usage("base").await.unwrap();
        assert!(usage.inodes >= 2 && usage.size > 0, "{usage:?}");

        for key in ["v", "top", "base"] {
            c.remove(key).await.unwrap();
        }
        assert!(names(&c, &[]).await.is_empty());
        c.prepare("base", "", no_labels())
            .await
            .expect("keys are reusable after Remove");
    }
}

/// Each refusal containerd depends on, with its code, and the store unchanged after it.
#[tokio::test(flavor = "multi_thread")]
async fn error_codes_and_no_side_effects() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let c = d.client().await;
        c.prepare("a", "", no_labels()).await.unwrap();
        c.commit("c", "a", no_labels(), None).await.unwrap();
        c.prepare("active", "c", no_labels()).await.unwrap();
        c.view("view", "c", no_labels()).await.unwrap();
        let before = d.footprint(&c).await;

        let unknown = c.clone().with_snapshotter("zfs");
        let huge = "k".repeat(1 << 20);
        let refusals: Vec<common::Refusal> = vec![
            (
                "prepare existing key",
                &[Code::AlreadyExists],
                c.prepare("active", "", no_labels()).await.map(drop),
            ),
            (
                "view existing key",
                &[Code::AlreadyExists],
                c.view("c", "", no_labels()).await.map(drop),
            ),
            (
                "prepare on missing parent",
                &[Code::NotFound],
                c.prepare("n", "missing", no_labels()).await.map(drop),
            ),
            (
                "prepare on active parent",
                &[Code::InvalidArgument],
                c.prepare("n", "active", no_labels()).await.map(drop),
            ),
            (
                "prepare on view parent",
                &[Code::InvalidArgument],
                c.prepare("n", "view", no_labels()).await.map(drop),
            ),
            (
                "prepare empty key",
                &[Code::InvalidArgument],
                c.prepare("", "", no_labels()).await.map(drop),
            ),
            (
                "prepare NUL key",
                &[Code::InvalidArgument],
                c.prepare("a\0b", "", no_labels()).await.map(drop),
            ),
            (
                "prepare 1 MiB key",
                &[Code::InvalidArgument],
                c.prepare(&huge, "", no_labels()).await.map(drop),
            ),
            (
                "commit a view",
                &[Code::FailedPrecondition],
                c.commit("x", "view", no_labels(), None).await.map(drop),
            ),
            (
                "commit a committed",
                &[Code::FailedPrecondition],
                c.commit("x", "c", no_labels(), None).await.map(drop),
            ),
            (
                "commit missing key",
                &[Code::NotFound],
                c.commit("x", "missing", no_labels(), None).await.map(drop),
            ),
            (
                "commit onto taken name",
                &[Code::AlreadyExists],
                c.commit("c", "active", no_labels(), None).await.map(drop),
            ),
            (
                "commit conflicting parent",
                &[Code::InvalidArgument],
                c.commit("x", "active", no_labels(), Some("other"))
                    .await
                    .map(drop),
            ),
            (
                "remove with children",
                &[Code::FailedPrecondition],
                c.remove("c").await.map(drop),
            ),
            (
                "remove missing",
                &[Code::NotFound],
                c.remove("missing").await.map(drop),
            ),
            (
                "stat missing",
                &[Code::NotFound],
                c.stat("missing").await.map(drop),
            ),
            (
                "mounts missing",
                &[Code::NotFound],
                c.mounts("missing").await.map(drop),
            ),
            (
                "mounts of committed",
                &[Code::FailedPrecondition],
                c.mounts("c").await.map(drop),
            ),
            (
                "usage missing",
                &[Code::NotFound],
                c.usage("missing").await.map(drop),
            ),
            (
                "update missing",
                &[Code::NotFound],
                c.update("missing", labels(&[]), &[]).await.map(drop),
            ),
            (
                "update parent",
                &[Code::InvalidArgument],
                c.update("c", labels(&[]), &["parent"]).await.map(drop),
            ),
            (
                "update name",
                &[Code::InvalidArgument],
                c.update("c", labels(&[]), &["name"]).await.map(drop),
            ),
            (
                "label too large",
                &[Code::InvalidArgument],
                c.update("c", labels(&[("k", &"v".repeat(5000))]), &[])
                    .await
                    .map(drop),
            ),
            (
                "unknown snapshotter",
                &[Code::InvalidArgument],
                unknown.stat("c").await.map(drop),
            ),
            (
                "malformed filter",
                &[Code::InvalidArgument],
                c.list(&["name=="]).await.map(drop),
            ),
        ];
        d.assert_refused_without_side_effects(&c, &before, refusals)
            .await;
    }
}

/// Update's field masks over the wire: `labels.<key>`, `labels`, none; `updated` moves and
/// `created` does not.
#[tokio::test(flavor = "multi_thread")]
async fn update_masks() {
    let d = Daemon::start("overlay");
    let c = d.client().await;
    c.prepare("a", "", labels(&[("keep", "1"), ("drop", "2")]))
        .await
        .unwrap();
    let created = c.stat("a").await.unwrap();
    assert_eq!(created.created, created.updated);

    let info = c
        .update(
            "a",
            labels(&[("new", "3"), ("keep", "ignored")]),
            &["labels.new", "labels.drop"],
        )
        .await
        .unwrap();
    assert_eq!(info.labels, labels(&[("keep", "1"), ("new", "3")]));
    assert_eq!(info.created, created.created);
    assert_ne!(info.updated, created.updated);

    let info = c
        .update("a", labels(&[("only", "x")]), &["labels"])
        .await
        .unwrap();
    assert_eq!(info.labels, labels(&[("only", "x")]));
    let info = c
        .update("a", labels(&[("empty", "mask")]), &[])
        .await
        .unwrap();
    assert_eq!(info.labels, labels(&[("empty", "mask")]));
    let stat = c.stat("a").await.unwrap();
    assert_eq!(
        stat.labels,
        labels(&[("empty", "mask")]),
        "the update is stored"
    );
}

/// List streams every snapshot (across several response messages) and applies containerd's
/// filters, including the remote-snapshot query containerd issues.
#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_streaming() {
    let d = Daemon::start("overlay");
    let c = d.client().await;
    c.prepare("base-a", "", no_labels()).await.unwrap();
    c.commit("base", "base-a", no_labels(), None).await.unwrap();
    for i in 0..250 {
        let parent = if i % 2 == 0 { "base" } else { "" };
        let mut l = labels(&[("group", if i % 10 == 0 { "ten" } else { "other" })]);
        if i == 7 {
            l.insert("containerd.io/snapshot.ref".into(), "sha256:abc".into());
        }
        c.prepare(&format!("s{i:03}"), parent, l).await.unwrap();
    }
    assert_eq!(names(&c, &[]).await.len(), 251);
    assert_eq!(names(&c, &["labels.group==ten"]).await.len(), 25);
    assert_eq!(
        names(&c, &["labels.group==ten,parent==base"]).await.len(),
        25
    );
    assert_eq!(
        names(&c, &["kind==committed", "name==s001"]).await,
        ["base", "s001"]
    );
    assert_eq!(
        names(&c, &["name~=^s00[0-2]$"]).await,
        ["s000", "s001", "s002"]
    );
    assert_eq!(
        names(
            &c,
            &[r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="""#]
        )
        .await,
        ["s007"]
    );
    assert!(
        names(
            &c,
            &[r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="base""#]
        )
        .await
        .is_empty()
    );
    assert_eq!(
        names(&c, &[r#"labels."containerd.io/snapshot.ref""#]).await,
        ["s007"],
        "presence"
    );
}

/// Usage of an active snapshot walks its directory (hard links once, blocks × 512); Commit
/// stores the same figure for later.
#[tokio::test(flavor = "multi_thread")]
async fn usage_active_and_committed() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let c = d.client().await;
        let mounts = c.prepare("a", "", no_labels()).await.unwrap();
        let dir = writable_dir(&mounts);
        let empty = c.usage("a").await.unwrap();
        assert_eq!(empty.inodes, 1, "{backend}: just the root directory");
        std::fs::write(dir.join("f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(dir.join("f"), dir.join("g")).unwrap();
        std::fs::create_dir(dir.join("d")).unwrap();
        let usage = c.usage("a").await.unwrap();
        assert_eq!(usage.inodes, 3, "{backend}: root, f (= g), d");
        let blocks = std::fs::metadata(dir.join("f")).unwrap().blocks() as i64 * 512;
        assert!(
            usage.size >= blocks && usage.size < 2 * blocks,
            "{backend}: {usage:?}, file {blocks}"
        );
        c.commit("c", "a", no_labels(), None).await.unwrap();
        assert_eq!(c.usage("c").await.unwrap(), usage, "{backend}");
    }
}

/// Remove is asynchronous: the directory stays until Cleanup, which removes exactly the
/// directories the metadata does not know (async removes, and what a crash left, found at
/// start-up), and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_removes_orphans_only() {
    for backend in BACKENDS {
        let mut d = Daemon::start(backend);
        // Leftovers of a crash: an id the store never recorded, and a stray name.
        d.stop();
        std::fs::create_dir_all(d.snapshots_dir().join("999/fs")).unwrap();
        std::fs::create_dir(d.snapshots_dir().join("stray")).unwrap();
        d.restart();
        let c = d.client().await;
        c.prepare("keep", "", no_labels()).await.unwrap();
        c.prepare("gone", "", no_labels()).await.unwrap();
        let all = d.snapshot_dirs();
        assert_eq!(all.len(), 4, "{backend}: {all:?}");
        c.remove("gone").await.unwrap();
        assert_eq!(
            d.snapshot_dirs().len(),
            4,
            "{backend}: async remove leaves the directory"
        );
        c.cleanup().await.unwrap();
        let left = d.snapshot_dirs();
        assert_eq!(left.len(), 1, "{backend}: {left:?}");
        let keep = writable_dir(&c.mounts("keep").await.unwrap());
        assert!(
            keep.starts_with(d.snapshots_dir().join(&left[0])),
            "{backend}: the live one stays"
        );
        c.cleanup().await.expect("idle cleanup");
        assert_eq!(d.snapshot_dirs(), left);
    }
}

/// With `sync_remove`, Remove deletes the directory before answering.
#[tokio::test(flavor = "multi_thread")]
async fn sync_remove_deletes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "sync_remove = true\n").unwrap();
    let d = Daemon::start_with("overlay", &["--config", config.to_str().unwrap()]);
    let c = d.client().await;
    c.prepare("a", "", no_labels()).await.unwrap();
    assert_eq!(d.snapshot_dirs().len(), 1);
    c.remove("a").await.unwrap();
    assert!(d.snapshot_dirs().is_empty());
}

/// Requests reach the backend their `snapshotter` field names; each backend has its own
/// namespace of keys.
#[tokio::test(flavor = "multi_thread")]
async fn snapshotter_field_dispatch() {
    let d = Daemon::start("overlay");
    let c = d.client().await;
    for name in ["", "strata", "overlay", "strata-overlay", "overlayfs"] {
        c.clone()
            .with_snapshotter(name)
            .prepare(&format!("k-{name}"), "", no_labels())
            .await
            .unwrap();
    }
    c.clone()
        .with_snapshotter("strata-native")
        .prepare("native-key", "", no_labels())
        .await
        .unwrap();
    assert_eq!(
        names(&c, &[]).await.len(),
        5,
        "all five names reach overlay"
    );
    assert_eq!(
        names(&c.clone().with_snapshotter("native"), &[]).await,
        ["native-key"]
    );
}

/// Commit's `parent` (containerd 2.2 rebase): overlay accepts none → committed; native, which
/// stores full copies, refuses it; both accept the parent they were prepared on.
#[tokio::test(flavor = "multi_thread")]
async fn commit_rebase() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let c = d.client().await;
        c.prepare("a", "", no_labels()).await.unwrap();
        c.commit("A", "a", no_labels(), None).await.unwrap();
        c.prepare("b", "A", no_labels()).await.unwrap();
        c.commit("B", "b", no_labels(), Some("A")).await.unwrap();
        c.prepare("layer", "", no_labels()).await.unwrap();
        let result = c.commit("L", "layer", no_labels(), Some("B")).await;
        match *backend {
            "overlay" => {
                result.unwrap();
                let info = c.stat("L").await.unwrap();
                assert_eq!(info.parent, "B");
            }
            _ => assert_eq!(result.unwrap_err().code(), Code::InvalidArgument),
        }
    }
}

/// `[overlay] upperdir_label` exposes each snapshot's upper directory in its info (Stat,
/// Update and List), and `mount_options` lead every overlay mount's options.
#[tokio::test(flavor = "multi_thread")]
async fn overlay_config_options() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[overlay]\nupperdir_label = true\nmount_options = [\"volatile\"]\n",
    )
    .unwrap();
    let d = Daemon::start_with("overlay", &["--config", config.to_str().unwrap()]);
    let c = d.client().await;
    let mounts = c.prepare("a", "", no_labels()).await.unwrap();
    let upper = writable_dir(&mounts).display().to_string();
    const LABEL: &str = "containerd.io/snapshot/overlay.upperdir";
    let info = c.stat("a").await.unwrap();
    assert_eq!(info.labels.get(LABEL), Some(&upper));
    let updated = c.update("a", labels(&[("x", "y")]), &[]).await.unwrap();
    assert_eq!(updated.labels.get(LABEL), Some(&upper));
    let listed = list_all(&c, &[]).await;
    assert_eq!(listed[0].labels.get(LABEL), Some(&upper));
    c.commit("A", "a", no_labels(), None).await.unwrap();
    let top = c.prepare("b", "A", no_labels()).await.unwrap();
    assert_eq!(top[0].options[0], "volatile", "{top:?}");
}

/// With `sync_commit`, Commit flushes the layer (syncfs) before recording it and otherwise
/// behaves the same: content and usage are there.
#[tokio::test(flavor = "multi_thread")]
async fn sync_commit_commits() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "sync_commit = true\n").unwrap();
    let d = Daemon::start_with("native", &["--config", config.to_str().unwrap()]);
    let c = d.client().await;
    let m = c.prepare("a", "", no_labels()).await.unwrap();
    std::fs::write(writable_dir(&m).join("f"), vec![1u8; 8192]).unwrap();
    c.commit("A", "a", no_labels(), None).await.unwrap();
    let usage = c.usage("A").await.unwrap();
    assert_eq!(usage.inodes, 2);
    let top = c.prepare("b", "A", no_labels()).await.unwrap();
    assert_eq!(
        std::fs::read(writable_dir(&top).join("f")).unwrap(),
        vec![1u8; 8192]
    );
}
