//! Checking a backend root against its metadata, and repairing what is safe to repair: what
//! `strata fsck` reports. The rules (which names belong under `snapshots/`, what is an orphan,
//! what a repair may delete) are the engine's own, shared with start-up recovery; this module
//! only compares and reports, in typed findings that the command line renders.
//!
//! | problem | repair |
//! |---|---|
//! | orphan directory: an id the metadata does not know, a `new-*` leftover, a foreign name | removed (what Cleanup would do); unknown ids are kept while a parent link is broken, as one may be the lost parent's layer |
//! | missing directory: a snapshot whose `snapshots/<id>/fs` is gone | its record removed, *only* if it has no children |
//! | broken parent link: a snapshot whose parent has no record | left: only a restore can bring the parent back |
//! | child of a missing parent: a snapshot further down such a chain, or below a snapshot without directory | left, for the same reason |
//! | usage drift: a committed snapshot whose recorded usage differs from a fresh walk | the recorded figure replaced by the walk's |
//! | btrfs: a read-only flag that disagrees with the kind (a committed snapshot writable, an active one read-only) | the flag set as the kind says |
//! | btrfs: a snapshot whose `fs` is a plain directory, not a subvolume | left: it still works; recreate it to get a subvolume back |
//!
//! Orphans are deleted the driver's way (btrfs: the subvolume destroy ioctl, as a read-only
//! subvolume cannot be emptied file by file), and a committed snapshot's usage is measured as
//! its Commit measured it (btrfs: what it holds beyond its parent).
//!
//! Run it only on a root no daemon serves (hold the root's lock, [`crate::lock_root`]): a
//! live daemon creates and removes directories as it goes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use strata_core::{Ctx, Error, Kind, Result, Usage};
use strata_meta::Record;
use strata_sys::usage::disk_usage;

use super::{Engine, walk_usage};
use crate::layout::{DirEntry, Layout, Orphan};
use crate::{BackendKind, Driver, OpenError};

/// One inconsistency between a backend's metadata and its directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An entry under `snapshots/` that no snapshot owns.
    OrphanDirectory {
        /// Its name under `snapshots/`.
        name: String,
        /// Why no snapshot owns it.
        why: Orphan,
        /// Bytes it holds.
        bytes: u64,
    },
    /// A snapshot whose directory is gone.
    MissingDirectory {
        /// Its key.
        key: String,
        /// Its id.
        id: u64,
        /// Its kind.
        kind: Kind,
        /// Its children, which depend on it.
        children: Vec<String>,
    },
    /// A snapshot whose parent has no record.
    BrokenParent {
        /// Its key.
        key: String,
        /// The missing parent.
        parent: String,
    },
    /// A snapshot further down from a missing parent, or below a snapshot whose directory is
    /// gone: it cannot be mounted.
    ChildOfMissingParent {
        /// Its key.
        key: String,
        /// The nearest ancestor that is missing (or has no directory).
        ancestor: String,
    },
    /// A committed snapshot whose recorded usage differs from its directory's.
    UsageDrift {
        /// Its key.
        key: String,
        /// Its id.
        id: u64,
        /// What the metadata says (`None`: nothing recorded).
        recorded: Option<Usage>,
        /// What a walk found.
        found: Usage,
    },
    /// A snapshot's content is not what its backend makes for its kind.
    SnapshotFault {
        /// Its key.
        key: String,
        /// Its id.
        id: u64,
        /// Its kind.
        kind: Kind,
        /// What is wrong.
        fault: SnapshotFault,
    },
    /// Entries under `snapshots/` but no metadata store: nothing can tell what they are.
    MissingStore {
        /// Entries under `snapshots/`.
        directories: u64,
    },
}

/// How a snapshot's content disagrees with what its driver makes (see
/// [`Driver::check_snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotFault {
    /// btrfs: the subvolume's read-only flag disagrees with the kind (committed snapshots and
    /// views are read-only, active ones writable).
    ReadOnlyFlag {
        /// The flag found.
        readonly: bool,
    },
    /// btrfs: a plain directory where a subvolume belongs (restored by a copy?). It works,
    /// but its snapshots and removal cost a copy and a walk.
    NotASubvolume,
}

/// What a repair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The orphan was removed.
    RemovedOrphan,
    /// The walk's usage was recorded.
    RecordedUsage,
    /// The record of the snapshot without directory was removed.
    RemovedRecord,
    /// The read-only flag was set as the kind says.
    SetReadOnlyFlag {
        /// The flag now.
        readonly: bool,
    },
}

/// Why a problem was left as it is.
#[derive(Debug)]
pub enum Left {
    /// An unknown id kept because some parent record is missing: the directory may be that
    /// parent's layer.
    MayBeLostParent,
    /// Removing the record would leave these children without a parent.
    HasChildren(Vec<String>),
    /// No repair brings back a parent record.
    ParentGone(String),
    /// The snapshot is intact; its ancestor is not (see that ancestor's problem).
    AncestorDamaged,
    /// Without metadata no directory can be told live or dead.
    NoStore,
    /// It works as it is; only recreating the snapshot changes it.
    WorksAsIs,
    /// The repair was tried and failed.
    Failed(Error),
}

/// What `--repair` made of a problem.
#[derive(Debug)]
pub enum Outcome {
    /// Repaired.
    Repaired(Repair),
    /// Left, and why.
    Left(Left),
}

/// A problem, and what a repair did about it (`None` when no repair was asked).
#[derive(Debug)]
pub struct Finding {
    /// The problem.
    pub problem: Problem,
    /// The repair's outcome.
    pub outcome: Option<Outcome>,
}

impl Finding {
    /// Whether it was repaired.
    pub fn repaired(&self) -> bool {
        matches!(self.outcome, Some(Outcome::Repaired(_)))
    }
}

/// One backend root's result.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Snapshots in the metadata.
    pub snapshots: u64,
    /// Entries under `snapshots/`.
    pub directories: u64,
    /// What was found, orphans first, then missing directories, parent links, usage drift.
    pub findings: Vec<Finding>,
}

/// Checks (and with `repair` repairs) the root `dir` of the backend `kind`, which no daemon
/// may be serving. Opens its store without start-up recovery and creates nothing: a root
/// without a store is reported, never given an empty one. `progress` hears of each snapshot
/// walked (done, total).
pub fn check_backend(
    kind: BackendKind,
    dir: &Path,
    repair: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport, OpenError> {
    let layout = Layout::new(dir);
    if !layout.metadata().exists() {
        let entries = layout
            .entries()
            .map_err(|e| OpenError::io("readdir", layout.snapshots(), e))?;
        return Ok(missing_store(entries.len() as u64, repair));
    }
    let ctx = &Ctx::background();
    match kind {
        // Mounts are never asked for: no need to probe the kernel's overlay options.
        BackendKind::Overlay => {
            let driver = crate::overlay::Overlay::with_options(Default::default());
            Engine::open_unrecovered(dir, driver)?.check(ctx, repair, progress)
        }
        BackendKind::Native => {
            Engine::open_unrecovered(dir, crate::native::Native)?.check(ctx, repair, progress)
        }
        BackendKind::Btrfs => {
            let driver = crate::btrfs::Btrfs::new(dir, Default::default())?;
            Engine::open_unrecovered(dir, driver)?.check(ctx, repair, progress)
        }
    }
    .map_err(OpenError::from)
}

fn missing_store(directories: u64, repair: bool) -> CheckReport {
    let mut report = CheckReport {
        directories,
        ..CheckReport::default()
    };
    if directories > 0 {
        report.findings.push(Finding {
            problem: Problem::MissingStore { directories },
            outcome: repair.then_some(Outcome::Left(Left::NoStore)),
        });
    }
    report
}

impl<D: Driver> Engine<D> {
    /// Compares the metadata with the directories (and each committed snapshot's recorded
    /// usage with a walk of it) and, with `repair`, fixes what is safe to fix. For a root no
    /// daemon serves: see [`check_backend`].
    pub fn check(
        &self,
        ctx: &Ctx,
        repair: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CheckReport> {
        let entries = self
            .layout
            .entries()
            .map_err(|e| Error::io("readdir", self.layout.snapshots(), e))?;
        let mut records: BTreeMap<String, Record> = BTreeMap::new();
        self.store.read(ctx, |tx| {
            tx.for_each(&mut |key, record| {
                records.insert(key.to_owned(), record);
                Ok(())
            })
        })?;
        let problems = self.find_problems(ctx, &entries, &records, progress);
        // A parent whose record is gone may have left its directory behind as an "orphan":
        // it is then the only copy of a layer its children need, and a restored store would
        // want it.
        let keep_unknown = problems
            .iter()
            .any(|p| matches!(p, Problem::BrokenParent { .. }));
        let findings = problems
            .into_iter()
            .map(|problem| {
                let outcome = repair.then(|| match self.repair(ctx, &problem, keep_unknown) {
                    Ok(outcome) => outcome,
                    Err(e) => Outcome::Left(Left::Failed(e)),
                });
                Finding { problem, outcome }
            })
            .collect();
        Ok(CheckReport {
            snapshots: records.len() as u64,
            directories: entries.len() as u64,
            findings,
        })
    }

    fn find_problems(
        &self,
        ctx: &Ctx,
        entries: &[DirEntry],
        records: &BTreeMap<String, Record>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        let ids: HashSet<u64> = records.values().map(|r| r.id).collect();
        for e in entries {
            if let Some(why) = e.entry.orphan(|id| ids.contains(&id)) {
                problems.push(Problem::OrphanDirectory {
                    name: e.name.clone(),
                    why,
                    bytes: bytes_of(&e.path),
                });
            }
        }

        let mut children: HashMap<&str, Vec<String>> = HashMap::new();
        for (key, r) in records {
            if !r.parent.is_empty() {
                children.entry(&r.parent).or_default().push(key.clone());
            }
        }
        let mut without_dir = HashSet::new();
        let mut drift = Vec::new();
        let total = records.len() as u64;
        for (done, (key, r)) in records.iter().enumerate() {
            let fs = self.layout.fs(r.id);
            if !fs.is_dir() {
                without_dir.insert(key.as_str());
                problems.push(Problem::MissingDirectory {
                    key: key.clone(),
                    id: r.id,
                    kind: r.kind,
                    children: children.get(key.as_str()).cloned().unwrap_or_default(),
                });
            } else {
                if let Ok(Some(fault)) = self.driver.check_snapshot(&self.layout, r.id, r.kind) {
                    problems.push(Problem::SnapshotFault {
                        key: key.clone(),
                        id: r.id,
                        kind: r.kind,
                        fault,
                    });
                }
                // A walk that fails (permissions, I/O, a broken parent chain) says nothing
                // about drift; what is wrong is reported elsewhere or by the daemon.
                if r.kind == Kind::Committed
                    && let Ok(found) = self.committed_usage(ctx, key, &fs)
                    && r.usage != Some(found)
                {
                    drift.push(Problem::UsageDrift {
                        key: key.clone(),
                        id: r.id,
                        recorded: r.usage,
                        found,
                    });
                }
            }
            progress(done as u64 + 1, total);
        }

        for (key, r) in records {
            if r.parent.is_empty() {
                continue;
            }
            if !records.contains_key(&r.parent) {
                problems.push(Problem::BrokenParent {
                    key: key.clone(),
                    parent: r.parent.clone(),
                });
                continue;
            }
            if let Some(ancestor) = first_bad_ancestor(records, &without_dir, &r.parent) {
                problems.push(Problem::ChildOfMissingParent {
                    key: key.clone(),
                    ancestor,
                });
            }
        }
        problems.extend(drift);
        problems
    }

    /// A committed snapshot's usage measured as its Commit measured it.
    fn committed_usage(&self, ctx: &Ctx, key: &str, fs: &Path) -> Result<Usage> {
        let snapshot = self.store.read(ctx, |tx| tx.snapshot(key))?;
        match self.driver.commit_usage(ctx, &self.layout, &snapshot)? {
            Some(usage) => Ok(usage),
            None => walk_usage(ctx, fs, key),
        }
    }

    fn repair(&self, ctx: &Ctx, problem: &Problem, keep_unknown: bool) -> Result<Outcome> {
        Ok(match problem {
            Problem::OrphanDirectory {
                why: Orphan::UnknownId,
                ..
            } if keep_unknown => Outcome::Left(Left::MayBeLostParent),
            Problem::OrphanDirectory { name, .. } => {
                let path = self.layout.snapshots().join(name);
                let removed = if path.is_dir() && !path.is_symlink() {
                    // The driver's way: a btrfs subvolume is not removed like a directory.
                    self.driver.destroy(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| Error::io("remove", &path, e))?;
                Outcome::Repaired(Repair::RemovedOrphan)
            }
            Problem::UsageDrift { key, found, .. } => {
                let (key, usage) = (key.clone(), *found);
                self.store.write(ctx, move |tx| tx.set_usage(&key, usage))?;
                Outcome::Repaired(Repair::RecordedUsage)
            }
            Problem::MissingDirectory { children, .. } if !children.is_empty() => {
                Outcome::Left(Left::HasChildren(children.clone()))
            }
            Problem::MissingDirectory { key, .. } => {
                // The store's own remove checks its parents index once more.
                let key = key.clone();
                self.store
                    .write(ctx, move |tx| tx.remove(&key).map(|_| ()))?;
                Outcome::Repaired(Repair::RemovedRecord)
            }
            Problem::BrokenParent { parent, .. } => Outcome::Left(Left::ParentGone(parent.clone())),
            Problem::ChildOfMissingParent { .. } => Outcome::Left(Left::AncestorDamaged),
            Problem::SnapshotFault {
                id,
                kind,
                fault: SnapshotFault::ReadOnlyFlag { .. },
                ..
            } => {
                let readonly = *kind != Kind::Active;
                self.driver.seal(&self.layout, *id, readonly)?;
                Outcome::Repaired(Repair::SetReadOnlyFlag { readonly })
            }
            Problem::SnapshotFault {
                fault: SnapshotFault::NotASubvolume,
                ..
            } => Outcome::Left(Left::WorksAsIs),
            Problem::MissingStore { .. } => Outcome::Left(Left::NoStore),
        })
    }
}

/// Bytes under `path`, a directory or anything else; 0 if it cannot be walked.
fn bytes_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => disk_usage(path).map(|u| u.bytes).unwrap_or(0),
        Ok(m) => m.blocks() * 512,
        Err(_) => 0,
    }
}

/// Walks up from `parent` (which has a record) and returns the first ancestor that has no
/// record or no directory, if any. A cycle (impossible unless the store was edited) stops the
/// walk.
fn first_bad_ancestor(
    records: &BTreeMap<String, Record>,
    without_dir: &HashSet<&str>,
    parent: &str,
) -> Option<String> {
    let mut seen = HashSet::new();
    let mut current = parent.to_owned();
    while !current.is_empty() && seen.insert(current.clone()) {
        if without_dir.contains(current.as_str()) {
            return Some(current);
        }
        match records.get(&current) {
            Some(r) => current = r.parent.clone(),
            None => return Some(current),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nearest missing ancestor is named; a cycle ends the walk.
    #[test]
    fn bad_ancestors() {
        use std::time::UNIX_EPOCH;
        let record = |id, parent: &str| Record {
            id,
            kind: Kind::Committed,
            parent: parent.into(),
            labels: Default::default(),
            created: UNIX_EPOCH,
            updated: UNIX_EPOCH,
            usage: None,
        };
        let records: BTreeMap<String, Record> = [
            ("b".to_string(), record(2, "a")),
            ("c".to_string(), record(3, "b")),
            ("x".to_string(), record(4, "y")),
            ("y".to_string(), record(5, "x")),
        ]
        .into();
        let none = HashSet::new();
        assert_eq!(first_bad_ancestor(&records, &none, "c"), Some("a".into()));
        assert_eq!(first_bad_ancestor(&records, &none, "x"), None);
        let b_gone: HashSet<&str> = ["b"].into();
        assert_eq!(first_bad_ancestor(&records, &b_gone, "c"), Some("b".into()));
    }
}
