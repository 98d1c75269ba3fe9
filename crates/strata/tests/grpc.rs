//! Every RPC of the snapshots service, over the real daemon's socket, for both backends:
//! the contract's success paths, each error code containerd relies on, and that a refused
//! request changes nothing.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{BACKENDS, Daemon, list_all, names, req, writable_dir};
use tonic::Code;

/// Prepare → write → Commit → View → Usage → Remove, with the kinds, parents and mounts
/// containerd expects along the way.
#[tokio::test(flavor = "multi_thread")]
async fn lifecycle() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let mut c = d.client().await;
        let mounts = c
            .prepare(req::prepare("base-active", ""))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            mounts[0].r#type, "bind",
            "{backend}: a layer without parent is a bind"
        );
        assert!(mounts[0].options.contains(&"rw".to_string()));
        assert_eq!(
            c.mounts(req::mounts("base-active"))
                .await
                .unwrap()
                .into_inner()
                .mounts,
            mounts
        );
        let dir = writable_dir(&mounts);
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o755);
        std::fs::write(dir.join("hello"), b"world").unwrap();

        c.commit(req::commit("base", "base-active")).await.unwrap();
        let info = c
            .stat(req::stat("base"))
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!(info.kind, 3, "committed");
        assert_eq!(
            c.stat(req::stat("base-active")).await.unwrap_err().code(),
            Code::NotFound
        );

        let top = c
            .prepare(req::prepare("top", "base"))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        let info = c
            .stat(req::stat("top"))
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!((info.kind, info.parent.as_str()), (2, "base"));
        match *backend {
            "overlay" => {
                assert_eq!(top[0].r#type, "overlay");
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
                assert_eq!(top[0].r#type, "bind");
                let copied = std::path::Path::new(&top[0].source).join("hello");
                assert_eq!(
                    std::fs::read(copied).unwrap(),
                    b"world",
                    "native copies the parent"
                );
            }
        }
        let view = c
            .view(req::view("v", "base"))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        assert!(
            view[0].options.contains(&"ro".to_string()),
            "{backend}: {view:?}"
        );
        let info = c
            .stat(req::stat("v"))
            .await
            .unwrap()
            .into_inner()
            .info
            .unwrap();
        assert_eq!(info.kind, 1, "view");

        let usage = c.usage(req::usage("base")).await.unwrap().into_inner();
        assert!(usage.inodes >= 2 && usage.size > 0, "{usage:?}");

        for key in ["v", "top", "base"] {
            c.remove(req::remove(key)).await.unwrap();
        }
        assert!(names(&mut c, &[]).await.is_empty());
        c.prepare(req::prepare("base", ""))
            .await
            .expect("keys are reusable after Remove");
    }
}

/// Each refusal containerd depends on, with its code, and the store unchanged after it.
#[tokio::test(flavor = "multi_thread")]
async fn error_codes_and_no_side_effects() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let mut c = d.client().await;
        c.prepare(req::prepare("a", "")).await.unwrap();
        c.commit(req::commit("c", "a")).await.unwrap();
        c.prepare(req::prepare("active", "c")).await.unwrap();
        c.view(req::view("view", "c")).await.unwrap();
        let before = list_all(&mut c, &[]).await;
        let dirs_before = d.snapshot_dirs();

        let mut commit_parent = req::commit("x", "active");
        commit_parent.parent = "other".into();
        let mut unknown = req::stat("c");
        unknown.snapshotter = "zfs".into();
        let huge = "k".repeat(1 << 20);
        let results: Vec<(&str, Code, Result<(), tonic::Status>)> = vec![
            (
                "prepare existing key",
                Code::AlreadyExists,
                c.prepare(req::prepare("active", "")).await.map(drop),
            ),
            (
                "view existing key",
                Code::AlreadyExists,
                c.view(req::view("c", "")).await.map(drop),
            ),
            (
                "prepare on missing parent",
                Code::NotFound,
                c.prepare(req::prepare("n", "missing")).await.map(drop),
            ),
            (
                "prepare on active parent",
                Code::InvalidArgument,
                c.prepare(req::prepare("n", "active")).await.map(drop),
            ),
            (
                "prepare on view parent",
                Code::InvalidArgument,
                c.prepare(req::prepare("n", "view")).await.map(drop),
            ),
            (
                "prepare empty key",
                Code::InvalidArgument,
                c.prepare(req::prepare("", "")).await.map(drop),
            ),
            (
                "prepare NUL key",
                Code::InvalidArgument,
                c.prepare(req::prepare("a\0b", "")).await.map(drop),
            ),
            (
                "prepare 1 MiB key",
                Code::InvalidArgument,
                c.prepare(req::prepare(&huge, "")).await.map(drop),
            ),
            (
                "commit a view",
                Code::FailedPrecondition,
                c.commit(req::commit("x", "view")).await.map(drop),
            ),
            (
                "commit a committed",
                Code::FailedPrecondition,
                c.commit(req::commit("x", "c")).await.map(drop),
            ),
            (
                "commit missing key",
                Code::NotFound,
                c.commit(req::commit("x", "missing")).await.map(drop),
            ),
            (
                "commit onto taken name",
                Code::AlreadyExists,
                c.commit(req::commit("c", "active")).await.map(drop),
            ),
            (
                "commit conflicting parent",
                Code::InvalidArgument,
                c.commit(commit_parent).await.map(drop),
            ),
            (
                "remove with children",
                Code::FailedPrecondition,
                c.remove(req::remove("c")).await.map(drop),
            ),
            (
                "remove missing",
                Code::NotFound,
                c.remove(req::remove("missing")).await.map(drop),
            ),
            (
                "stat missing",
                Code::NotFound,
                c.stat(req::stat("missing")).await.map(drop),
            ),
            (
                "mounts missing",
                Code::NotFound,
                c.mounts(req::mounts("missing")).await.map(drop),
            ),
            (
                "mounts of committed",
                Code::FailedPrecondition,
                c.mounts(req::mounts("c")).await.map(drop),
            ),
            (
                "usage missing",
                Code::NotFound,
                c.usage(req::usage("missing")).await.map(drop),
            ),
            (
                "update missing",
                Code::NotFound,
                c.update(req::update("missing", req::labels(&[]), &[]))
                    .await
                    .map(drop),
            ),
            (
                "update parent",
                Code::InvalidArgument,
                c.update(req::update("c", req::labels(&[]), &["parent"]))
                    .await
                    .map(drop),
            ),
            (
                "update name",
                Code::InvalidArgument,
                c.update(req::update("c", req::labels(&[]), &["name"]))
                    .await
                    .map(drop),
            ),
            (
                "label too large",
                Code::InvalidArgument,
                c.update(req::update(
                    "c",
                    req::labels(&[("k", &"v".repeat(5000))]),
                    &[],
                ))
                .await
                .map(drop),
            ),
            (
                "unknown snapshotter",
                Code::NotFound,
                c.stat(unknown).await.map(drop),
            ),
            (
                "malformed filter",
                Code::InvalidArgument,
                c.list(req::list(&["name=="])).await.map(drop),
            ),
        ];
        for (what, code, result) in results {
            let status = result.expect_err(what);
            assert_eq!(
                status.code(),
                code,
                "{backend}: {what}: {}",
                status.message()
            );
            assert!(
                !status.message().is_empty(),
                "{what}: the error says what is wrong"
            );
        }
        assert_eq!(
            list_all(&mut c, &[]).await,
            before,
            "{backend}: refused requests changed the store"
        );
        assert_eq!(
            d.snapshot_dirs(),
            dirs_before,
            "{backend}: refused requests changed the disk"
        );
    }
}

/// Update's field masks over the wire: `labels.<key>`, `labels`, none; `updated` moves and
/// `created` does not.
#[tokio::test(flavor = "multi_thread")]
async fn update_masks() {
    let d = Daemon::start("overlay");
    let mut c = d.client().await;
    let mut p = req::prepare("a", "");
    p.labels = req::labels(&[("keep", "1"), ("drop", "2")]);
    c.prepare(p).await.unwrap();
    let created = c
        .stat(req::stat("a"))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(created.created_at, created.updated_at);

    let info = c
        .update(req::update(
            "a",
            req::labels(&[("new", "3"), ("keep", "ignored")]),
            &["labels.new", "labels.drop"],
        ))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.labels, req::labels(&[("keep", "1"), ("new", "3")]));
    assert_eq!(info.created_at, created.created_at);
    assert_ne!(info.updated_at, created.updated_at);

    let info = c
        .update(req::update("a", req::labels(&[("only", "x")]), &["labels"]))
        .await
        .unwrap();
    assert_eq!(
        info.into_inner().info.unwrap().labels,
        req::labels(&[("only", "x")])
    );
    let info = c
        .update(req::update("a", req::labels(&[("empty", "mask")]), &[]))
        .await
        .unwrap();
    assert_eq!(
        info.into_inner().info.unwrap().labels,
        req::labels(&[("empty", "mask")])
    );
    let stat = c
        .stat(req::stat("a"))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(
        stat.labels,
        req::labels(&[("empty", "mask")]),
        "the update is stored"
    );
}

/// List streams every snapshot (across several response messages) and applies containerd's
/// filters, including the remote-snapshot query containerd issues.
#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_streaming() {
    let d = Daemon::start("overlay");
    let mut c = d.client().await;
    c.prepare(req::prepare("base-a", "")).await.unwrap();
    c.commit(req::commit("base", "base-a")).await.unwrap();
    for i in 0..250 {
        let mut p = req::prepare(&format!("s{i:03}"), if i % 2 == 0 { "base" } else { "" });
        p.labels = req::labels(&[("group", if i % 10 == 0 { "ten" } else { "other" })]);
        if i == 7 {
            p.labels
                .insert("containerd.io/snapshot.ref".into(), "sha256:abc".into());
        }
        c.prepare(p).await.unwrap();
    }
    assert_eq!(names(&mut c, &[]).await.len(), 251);
    assert_eq!(names(&mut c, &["labels.group==ten"]).await.len(), 25);
    assert_eq!(
        names(&mut c, &["labels.group==ten,parent==base"])
            .await
            .len(),
        25
    );
    assert_eq!(
        names(&mut c, &["kind==committed", "name==s001"]).await,
        ["base", "s001"]
    );
    assert_eq!(
        names(&mut c, &["name~=^s00[0-2]$"]).await,
        ["s000", "s001", "s002"]
    );
    assert_eq!(
        names(
            &mut c,
            &[r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="""#]
        )
        .await,
        ["s007"]
    );
    assert!(
        names(
            &mut c,
            &[r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="base""#]
        )
        .await
        .is_empty()
    );
    assert_eq!(
        names(&mut c, &[r#"labels."containerd.io/snapshot.ref""#]).await,
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
        let mut c = d.client().await;
        let mounts = c
            .prepare(req::prepare("a", ""))
            .await
            .unwrap()
            .into_inner()
            .mounts;
        let dir = writable_dir(&mounts);
        let empty = c.usage(req::usage("a")).await.unwrap().into_inner();
        assert_eq!(empty.inodes, 1, "{backend}: just the root directory");
        std::fs::write(dir.join("f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(dir.join("f"), dir.join("g")).unwrap();
        std::fs::create_dir(dir.join("d")).unwrap();
        let usage = c.usage(req::usage("a")).await.unwrap().into_inner();
        assert_eq!(usage.inodes, 3, "{backend}: root, f (= g), d");
        let blocks = std::fs::metadata(dir.join("f")).unwrap().blocks() as i64 * 512;
        assert!(
            usage.size >= blocks && usage.size < 2 * blocks,
            "{backend}: {usage:?}, file {blocks}"
        );
        c.commit(req::commit("c", "a")).await.unwrap();
        assert_eq!(
            c.usage(req::usage("c")).await.unwrap().into_inner(),
            usage,
            "{backend}"
        );
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
        let mut c = d.client().await;
        c.prepare(req::prepare("keep", "")).await.unwrap();
        c.prepare(req::prepare("gone", "")).await.unwrap();
        let all = d.snapshot_dirs();
        assert_eq!(all.len(), 4, "{backend}: {all:?}");
        c.remove(req::remove("gone")).await.unwrap();
        assert_eq!(
            d.snapshot_dirs().len(),
            4,
            "{backend}: async remove leaves the directory"
        );
        c.cleanup(req::cleanup()).await.unwrap();
        let left = d.snapshot_dirs();
        assert_eq!(left.len(), 1, "{backend}: {left:?}");
        let keep = writable_dir(
            &c.mounts(req::mounts("keep"))
                .await
                .unwrap()
                .into_inner()
                .mounts,
        );
        assert!(
            keep.starts_with(d.snapshots_dir().join(&left[0])),
            "{backend}: the live one stays"
        );
        c.cleanup(req::cleanup()).await.expect("idle cleanup");
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
    let mut c = d.client().await;
    c.prepare(req::prepare("a", "")).await.unwrap();
    assert_eq!(d.snapshot_dirs().len(), 1);
    c.remove(req::remove("a")).await.unwrap();
    assert!(d.snapshot_dirs().is_empty());
}

/// Requests reach the backend their `snapshotter` field names; each backend has its own
/// namespace of keys.
#[tokio::test(flavor = "multi_thread")]
async fn snapshotter_field_dispatch() {
    let d = Daemon::start("overlay");
    let mut c = d.client().await;
    for name in ["", "strata", "overlay", "strata-overlay", "overlayfs"] {
        let mut r = req::prepare(&format!("k-{name}"), "");
        r.snapshotter = name.into();
        c.prepare(r).await.unwrap();
    }
    let mut r = req::prepare("native-key", "");
    r.snapshotter = "strata-native".into();
    c.prepare(r).await.unwrap();
    assert_eq!(
        names(&mut c, &[]).await.len(),
        5,
        "all five names reach overlay"
    );
    let mut l = req::list(&[]);
    l.snapshotter = "native".into();
    let mut stream = c.list(l).await.unwrap().into_inner();
    let batch = stream.message().await.unwrap().unwrap();
    assert_eq!(batch.info.len(), 1);
    assert_eq!(batch.info[0].name, "native-key");
}

/// Commit's `parent` (containerd 2.2 rebase): overlay accepts none → committed; native, which
/// stores full copies, refuses it; both accept the parent they were prepared on.
#[tokio::test(flavor = "multi_thread")]
async fn commit_rebase() {
    for backend in BACKENDS {
        let d = Daemon::start(backend);
        let mut c = d.client().await;
        c.prepare(req::prepare("a", "")).await.unwrap();
        c.commit(req::commit("A", "a")).await.unwrap();
        c.prepare(req::prepare("b", "A")).await.unwrap();
        let mut same = req::commit("B", "b");
        same.parent = "A".into();
        c.commit(same).await.unwrap();
        c.prepare(req::prepare("layer", "")).await.unwrap();
        let mut rebase = req::commit("L", "layer");
        rebase.parent = "B".into();
        let result = c.commit(rebase).await;
        match *backend {
            "overlay" => {
                result.unwrap();
                let info = c
                    .stat(req::stat("L"))
                    .await
                    .unwrap()
                    .into_inner()
                    .info
                    .unwrap();
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
    let mut c = d.client().await;
    let mounts = c
        .prepare(req::prepare("a", ""))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    let upper = writable_dir(&mounts).display().to_string();
    const LABEL: &str = "containerd.io/snapshot/overlay.upperdir";
    let info = c
        .stat(req::stat("a"))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.labels.get(LABEL), Some(&upper));
    let updated = c
        .update(req::update("a", req::labels(&[("x", "y")]), &[]))
        .await
        .unwrap();
    assert_eq!(
        updated.into_inner().info.unwrap().labels.get(LABEL),
        Some(&upper)
    );
    let listed = list_all(&mut c, &[]).await;
    assert_eq!(listed[0].labels.get(LABEL), Some(&upper));
    c.commit(req::commit("A", "a")).await.unwrap();
    let top = c
        .prepare(req::prepare("b", "A"))
        .await
        .unwrap()
        .into_inner()
        .mounts;
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
    let mut c = d.client().await;
    let m = c
        .prepare(req::prepare("a", ""))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    std::fs::write(writable_dir(&m).join("f"), vec![1u8; 8192]).unwrap();
    c.commit(req::commit("A", "a")).await.unwrap();
    let usage = c.usage(req::usage("A")).await.unwrap().into_inner();
    assert_eq!(usage.inodes, 2);
    let top = c
        .prepare(req::prepare("b", "A"))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(
        std::fs::read(writable_dir(&top).join("f")).unwrap(),
        vec![1u8; 8192]
    );
}
