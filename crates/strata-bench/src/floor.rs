//! The floor: what the filesystem itself charges for the steps a snapshotter cannot avoid —
//! a durable metadata write and the directory operations of a Prepare — measured on the same
//! kind of disk the servers run on.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use crate::Result;
use crate::ops::Measured;
use crate::report::{FloorRow, summarize};

fn time<F: FnMut(usize) -> std::io::Result<()>>(n: usize, mut f: F) -> Result<Measured> {
    let mut m = Measured::default();
    for i in 0..n {
        let t0 = Instant::now();
        f(i)?;
        m.push(t0.elapsed(), Default::default());
    }
    Ok(m)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Measures the floor operations `samples` times each in `dir` (a fresh filesystem), on a
/// blocking thread.
pub async fn measure(dir: &Path, samples: usize) -> Result<Vec<FloorRow>> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || measure_blocking(&dir, samples))
        .await
        .map_err(|e| format!("floor: {e}"))?
}

fn measure_blocking(dir: &Path, samples: usize) -> Result<Vec<FloorRow>> {
    let n = samples.max(1);
    let mut rows = Vec::new();
    let mut add = |op: &str, m: Measured| {
        rows.push(FloorRow {
            op: op.to_owned(),
            summary: summarize(&m),
        });
    };
    let block = [0x5au8; 4096];

    // A metadata store's commit: overwrite a 4 KiB page of an existing file and flush it.
    let path = dir.join("page");
    let mut f = fs::File::create(&path)?;
    f.write_all(&[0u8; 1 << 20])?;
    f.sync_all()?;
    let m = time(n, |i| {
        f.write_all_at(&block, (i % 256) as u64 * 4096)?;
        f.sync_all()
    })?;
    add("4 KiB write + fsync (existing file)", m);
    let m = time(n, |i| {
        f.write_all_at(&block, (i % 256) as u64 * 4096)?;
        f.sync_data()
    })?;
    add("4 KiB write + fdatasync (existing file)", m);
    // An appending log: the file grows, so its size (metadata) is journaled each time.
    let log = dir.join("log");
    let mut f = fs::File::create(&log)?;
    f.sync_all()?;
    let m = time(n, |_| {
        f.write_all(&block)?;
        f.sync_data()
    })?;
    add("4 KiB append + fdatasync", m);

    // The directory work of a Prepare: build `tmp/fs` aside, rename it into place.
    let snaps = dir.join("snapshots");
    fs::create_dir(&snaps)?;
    fsync_dir(dir)?;
    let m = time(n, |i| {
        let tmp = snaps.join(format!("new-{i}"));
        fs::create_dir(&tmp)?;
        fs::create_dir(tmp.join("fs"))?;
        fs::rename(&tmp, snaps.join(i.to_string()))
    })?;
    add("mkdir x2 + rename", m);
    let m = time(n, |i| {
        let tmp = snaps.join(format!("new-d{i}"));
        fs::create_dir(&tmp)?;
        fs::create_dir(tmp.join("fs"))?;
        fs::rename(&tmp, snaps.join(format!("d{i}")))?;
        fsync_dir(&snaps)
    })?;
    add("mkdir x2 + rename + fsync(dir)", m);
    // Both together, what a durable Prepare needs at least.
    let mut page = fs::OpenOptions::new().write(true).open(&path)?;
    let m = time(n, |i| {
        let tmp = snaps.join(format!("new-p{i}"));
        fs::create_dir(&tmp)?;
        fs::create_dir(tmp.join("fs"))?;
        fs::rename(&tmp, snaps.join(format!("p{i}")))?;
        page.write_all_at(&block, (i % 256) as u64 * 4096)?;
        page.sync_data()
    })?;
    add("mkdir x2 + rename + 4 KiB write + fdatasync", m);
    page.flush()?;
    Ok(rows)
}
