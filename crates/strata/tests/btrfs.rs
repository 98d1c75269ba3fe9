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
