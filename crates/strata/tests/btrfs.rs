//! The btrfs backend through the daemon, on a loop btrfs each test makes (needs root and
//! `mkfs.btrfs`): start-up refuses a root that is not on btrfs, the `[btrfs]` configuration
//! enables quotas and sets a default size limit that a container hits with "Disk quota
//! exceeded" while an extraction snapshot and a neighbour do not, Usage comes from qgroups,
//! and `strata doctor` reports btrfs, quota and qgroup state.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use common::{Daemon, labels, no_labels, writable_dir};
use strata_sys::testing::LoopBtrfs;

const MIB: u64 = 1 << 20;

fn write_file(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0x33u8; MIB as usize];
    for _ in 0..bytes / MIB {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

/// `--backend btrfs` on a root that is not on btrfs stops at start with a message naming
/// the filesystem and what to do.
#[test]
fn refuses_a_root_not_on_btrfs() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    if strata_sys::btrfs::is_btrfs(dir.path()).unwrap() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--backend",
            "btrfs",
            "--config",
            "/dev/null",
            "--root",
        ])
        .arg(dir.path().join("root"))
        .arg("--address")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("opening the btrfs backend")
            && stderr.contains("needs its root on a btrfs filesystem"),
        "{stderr}"
    );
}

/// The configuration's default limit holds for a container but not for an extraction
/// snapshot; the label overrides it; Usage comes from the snapshot's qgroup; doctor sees
/// simple quotas and the limited subvolumes.
#[tokio::test(flavor = "multi_thread")]
async fn configured_limits_over_grpc() {
    let fs = LoopBtrfs::new(1 << 30);
    let config = fs.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[btrfs]\nquota = \"simple\"\ndefault_max_size = {}\n",
            8 * MIB
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let d = Daemon::start_in(fs.path(), "btrfs", &["--config", config_arg]);
    let c = d.client().await;
    let container = writable_dir(&c.prepare("default/1/c1", "", no_labels()).await.unwrap());
    let extract = writable_dir(
        &c.prepare("default/2/extract-77-sha256:ab", "", no_labels())
            .await
            .unwrap(),
    );
    let max_size = labels(&[("containerd.io/snapshot/max-size", &(32 * MIB).to_string())]);
    let labelled = writable_dir(&c.prepare("default/3/c2", "", max_size).await.unwrap());

    let err = write_file(&container.join("big"), 24 * MIB).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(122), "{err}");
    write_file(&extract.join("big"), 64 * MIB).unwrap();
    write_file(&labelled.join("big"), 24 * MIB).unwrap();

    strata_sys::syncfs(fs.path()).unwrap();
    let usage = c.usage("default/2/extract-77-sha256:ab").await.unwrap();
    assert!(
        usage.size >= (64 * MIB) as i64 && usage.size < (65 * MIB) as i64,
        "{usage:?}"
    );
    assert_eq!(usage.inodes, 0, "qgroups count bytes only");

    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["doctor", "--config", config_arg, "--root"])
        .arg(&d.root)
        .arg("--address")
        .arg(&d.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split("  ").map(str::trim).any(|f| f == name))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"))
            .to_owned()
    };
    assert!(line("btrfs").starts_with("OK"), "{text}");
    let quota = line("btrfs quota");
    assert!(
        quota.starts_with("OK") && quota.contains("simple quotas"),
        "{quota}"
    );
    let qgroups = line("qgroups");
    assert!(
        qgroups.contains("3 snapshot subvolumes, 2 with a size limit"),
        "{qgroups}"
    );
    assert!(line("project quotas").contains("btrfs"), "{text}");
}

/// `strata fsck` knows subvolumes: a committed snapshot made writable and an active one left
/// read-only are reported and repaired by setting the flag; an orphan read-only subvolume is
/// destroyed; committed usage (measured against the parent) shows no drift.
#[tokio::test(flavor = "multi_thread")]
async fn fsck_knows_subvolumes() {
    let fs = LoopBtrfs::new(512 << 20);
    let mut d = Daemon::start_in(fs.path(), "btrfs", &["--config", "/dev/null"]);
    let c = d.client().await;
    let base = writable_dir(&c.prepare("base-a", "", no_labels()).await.unwrap());
    write_file(&base.join("f"), MIB).unwrap();
    c.commit("base", "base-a", no_labels(), None).await.unwrap();
    let layer = writable_dir(&c.prepare("layer-a", "base", no_labels()).await.unwrap());
    write_file(&layer.join("g"), 2 * MIB).unwrap();
    c.commit("layer", "layer-a", no_labels(), None)
        .await
        .unwrap();
    let active = writable_dir(&c.prepare("active", "layer", no_labels()).await.unwrap());
    drop(c);
    d.stop();

    let fsck = |repair: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(["fsck", "--config", "/dev/null", "--root"])
            .arg(&d.root);
        if repair {
            cmd.arg("--repair");
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = fsck(false);
    assert_eq!(
        code,
        Some(0),
        "a clean btrfs root (no usage drift):\n{text}"
    );

    strata_sys::btrfs::set_readonly(&layer, false).unwrap();
    strata_sys::btrfs::set_readonly(&active, true).unwrap();
    let orphan = d.snapshots_dir().join("99");
    std::fs::create_dir(&orphan).unwrap();
    strata_sys::btrfs::snapshot(&base, &orphan.join("fs"), true).unwrap();
    let (code, text) = fsck(false);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("committed snapshot \"layer\""), "{text}");
    assert!(text.contains("has a writable subvolume"), "{text}");
    assert!(text.contains("active snapshot \"active\""), "{text}");
    assert!(text.contains("orphan directory snapshots/99"), "{text}");

    let (code, text) = fsck(true);
    assert_eq!(code, Some(0), "{text}");
    assert!(strata_sys::btrfs::is_readonly(&layer).unwrap());
    assert!(!strata_sys::btrfs::is_readonly(&active).unwrap());
    assert!(!orphan.exists());
    let (code, text) = fsck(false);
    assert_eq!(code, Some(0), "{text}");
}
