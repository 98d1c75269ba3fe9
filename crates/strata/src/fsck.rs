//! `strata fsck`: compares each backend's metadata with its directories while the daemon is
//! stopped, and with `--repair` fixes what is safe to fix.
//!
//! What it finds, per backend (`<root>/<backend>/`):
//!
//! | problem | repair |
//! |---|---|
//! | orphan directory: an id the metadata does not know, a `new-*` leftover, a foreign name | removed (what the daemon's Cleanup would do); unknown ids are kept while a parent link is broken, as one may be the lost parent's layer |
//! | missing directory: a snapshot whose `snapshots/<id>/fs` is gone | its record removed, *only* if it has no children |
//! | broken parent link: a snapshot whose parent has no record | left: only a restore can bring the parent back |
//! | child of a missing parent: a snapshot further down such a chain, or below a snapshot without directory | left, for the same reason |
//! | usage drift: a committed snapshot whose recorded usage differs from a fresh walk | the recorded figure replaced by the walk's |
//! | btrfs: a read-only flag that disagrees with the kind (a committed snapshot writable, an active one read-only) | the flag set as the kind says |
//! | btrfs: a snapshot whose `fs` is a plain directory, not a subvolume | left: it still works; recreate it to get a subvolume back |
//!
//! On btrfs, orphans are deleted with the subvolume destroy ioctl (a read-only subvolume
//! cannot be emptied file by file), and a committed snapshot's usage is what it holds beyond
//! its parent, as the backend records it.
//!
//! It takes the root's lock (`<root>/strata.lock`) as the daemon does, so it refuses to run
//! beside one: a live daemon creates and removes directories as it goes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use strata_backend::btrfs::SubvolumeState;
use strata_backend::{BackendKind, Entry, Layout};
use strata_core::{Ctx, Kind, Usage};
use strata_meta::{Record, Store};
use strata_sys::lock::RootLock;
use strata_sys::usage::disk_usage;

use crate::cli::format::human_size;
use crate::config::ConfigError;
use crate::progress::Progress;
use crate::settings::ConfigArgs;

/// `strata fsck`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct FsckArgs {
    /// Configuration file (TOML) [default: /etc/strata/config.toml if present]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Root directory [default: the config's, else /var/lib/strata]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Fix what is safe to fix, and say what was left and why
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Why fsck could not check a root (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The root does not exist.
    #[error("root {0} does not exist")]
    NoRoot(PathBuf),
    /// A daemon holds the root.
    #[error(
        "a strata daemon is using root {} (it holds {}): fsck works offline; stop the daemon first",
        root.display(), lock.display()
    )]
    Locked {
        /// The root.
        root: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A filesystem step failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The step.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A backend's metadata store could not be read or written.
    #[error("{backend} metadata: {source}")]
    Store {
        /// The backend.
        backend: String,
        /// What failed.
        source: strata_core::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FsckError {
    let path = path.to_owned();
    move |source| FsckError::Io { op, path, source }
}

/// One inconsistency between a backend's metadata and its directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    /// A directory under `snapshots/` that no snapshot owns.
    OrphanDirectory {
        /// Its name under `snapshots/`.
        name: String,
        /// `unknown-id`, `leftover` (`new-*`, a crash during Prepare) or `foreign`.
        why: &'static str,
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
        kind: &'static str,
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
    /// A snapshot further down from a missing parent, or below a snapshot whose directory
    /// is gone: it cannot be mounted.
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
        recorded: Option<UsageJson>,
        /// What a walk found.
        found: UsageJson,
    },
    /// btrfs: a subvolume whose read-only flag disagrees with its snapshot's kind.
    ReadOnlyFlag {
        /// Its key.
        key: String,
        /// Its id.
        id: u64,
        /// Its kind.
        kind: &'static str,
        /// The flag found.
        readonly: bool,
    },
    /// btrfs: a snapshot whose `fs` is a plain directory, not a subvolume.
    NotASubvolume {
        /// Its key.
        key: String,
        /// Its id.
        id: u64,
    },
    /// Directories without any metadata store: nothing can tell what they are.
    MissingStore {
        /// Directories under `snapshots/`.
        directories: u64,
    },
}

/// A usage figure in the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageJson {
    /// Bytes.
    pub size: i64,
    /// Inodes.
    pub inodes: i64,
}

impl From<Usage> for UsageJson {
    fn from(u: Usage) -> UsageJson {
        UsageJson {
            size: u.size,
            inodes: u.inodes,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::OrphanDirectory { name, why, bytes } => {
                let why = match *why {
                    "unknown-id" => "an id the metadata does not know",
                    "leftover" => "a half-built directory left by a crash",
                    _ => "not a name Strata gives",
                };
                write!(
                    f,
                    "orphan directory snapshots/{name}: {why} ({})",
                    human_size(*bytes as i64)
                )
            }
            Problem::MissingDirectory {
                key,
                id,
                kind,
                children,
            } => {
                write!(
                    f,
                    "missing directory: {kind} snapshot {key:?} (id {id}) has no snapshots/{id}/fs"
                )?;
                if !children.is_empty() {
                    write!(f, "; its children: {}", quoted_list(children))?;
                }
                Ok(())
            }
            Problem::BrokenParent { key, parent } => write!(
                f,
                "broken parent link: snapshot {key:?} names parent {parent:?}, which has no record"
            ),
            Problem::ChildOfMissingParent { key, ancestor } => write!(
                f,
                "child of a missing parent: snapshot {key:?} descends from {ancestor:?}, which is \
                 missing or has no directory; it cannot be mounted"
            ),
            Problem::UsageDrift {
                key,
                id,
                recorded,
                found,
            } => {
                let recorded = match recorded {
                    Some(u) => format!("{} / {} inodes", human_size(u.size), u.inodes),
                    None => "nothing".to_owned(),
                };
                write!(
                    f,
                    "usage drift: committed snapshot {key:?} (id {id}) records {recorded}, its \
                     directory holds {} / {} inodes",
                    human_size(found.size),
                    found.inodes
                )
            }
            Problem::ReadOnlyFlag {
                key,
                id,
                kind,
                readonly,
            } => write!(
                f,
                "read-only flag: {kind} snapshot {key:?} (id {id}) has a {} subvolume",
                if *readonly { "read-only" } else { "writable" }
            ),
            Problem::NotASubvolume { key, id } => write!(
                f,
                "not a subvolume: snapshot {key:?} has a plain directory at snapshots/{id}/fs"
            ),
            Problem::MissingStore { directories } => write!(
                f,
                "missing metadata store: {directories} entries under snapshots/ but no metadata.redb"
            ),
        }
    }
}

fn quoted_list(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A problem and what `--repair` did about it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The problem.
    #[serde(flatten)]
    pub problem: Problem,
    /// The problem in words.
    pub message: String,
    /// Whether it was repaired.
    pub repaired: bool,
    /// What was done, or why nothing was (absent without `--repair`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// One backend's result.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    /// The backend (`overlay`, `native`).
    pub backend: String,
    /// Its directory.
    pub path: PathBuf,
    /// Snapshots in its metadata.
    pub snapshots: u64,
    /// Entries under `snapshots/`.
    pub directories: u64,
    /// What was found.
    pub findings: Vec<Finding>,
}

/// The whole root's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The root checked.
    pub root: PathBuf,
    /// Every backend found under it.
    pub backends: Vec<BackendReport>,
    /// Whether `--repair` was asked.
    pub repair: bool,
}

impl Report {
    /// Problems found.
    pub fn problems(&self) -> usize {
        self.backends.iter().map(|b| b.findings.len()).sum()
    }

    /// Problems repaired.
    pub fn repaired(&self) -> usize {
        self.backends
            .iter()
            .flat_map(|b| &b.findings)
            .filter(|f| f.repaired)
            .count()
    }

    /// 0 clean (or everything repaired), 1 problems left.
    pub fn exit_code(&self) -> u8 {
        if self.repaired() == self.problems() {
            0
        } else {
            1
        }
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for b in &self.backends {
            if b.findings.is_empty() {
                out.push_str(&format!(
                    "{} ({}): clean: {} snapshots, {} directories\n",
                    b.backend,
                    b.path.display(),
                    b.snapshots,
                    b.directories
                ));
                continue;
            }
            out.push_str(&format!(
                "{} ({}): {} snapshots, {} directories, {} problems\n",
                b.backend,
                b.path.display(),
                b.snapshots,
                b.directories,
                b.findings.len()
            ));
            for f in &b.findings {
                out.push_str(&format!("  {}\n", f.message));
                if let Some(action) = &f.action {
                    let verb = if f.repaired { "repaired" } else { "left" };
                    out.push_str(&format!("    {verb}: {action}\n"));
                }
            }
        }
        let (problems, repaired) = (self.problems(), self.repaired());
        if self.backends.is_empty() {
            out.push_str(&format!(
                "fsck: no backend directories under {}\n",
                self.root.display()
            ));
        } else if problems == 0 {
            out.push_str("fsck: clean\n");
        } else if self.repair {
            out.push_str(&format!(
                "fsck: {problems} problems, {repaired} repaired, {} left\n",
                problems - repaired
            ));
        } else {
            out.push_str(&format!(
                "fsck: {problems} problems; `strata fsck --repair` fixes what is safe to fix\n"
            ));
        }
        out
    }
}

/// Runs `strata fsck`: prints the report and returns the exit code (0 clean or repaired,
/// 1 problems left, 2 error).
pub fn main(args: FsckArgs) -> u8 {
    let settings = ConfigArgs {
        config: args.config,
        root: args.root,
        address: None,
    };
    let result = settings
        .load()
        .map_err(FsckError::from)
        .and_then(|(config, _)| check_root(&config.root, args.repair));
    match result {
        Ok(report) => {
            if args.json {
                print!("{}", crate::cli::render::json(&report));
            } else {
                print!("{}", report.text());
            }
            report.exit_code()
        }
        Err(e) => {
            eprintln!("strata: fsck: {e}");
            2
        }
    }
}

/// Checks (and with `repair` repairs) every backend under `root`, holding the root's lock.
pub fn check_root(root: &Path, repair: bool) -> Result<Report, FsckError> {
    if !root.is_dir() {
        return Err(FsckError::NoRoot(root.to_owned()));
    }
    let lock = root.join("strata.lock");
    let _lock = RootLock::try_acquire(&lock)
        .map_err(io("lock", &lock))?
        .ok_or_else(|| FsckError::Locked {
            root: root.to_owned(),
            lock: lock.clone(),
        })?;
    let mut backends = Vec::new();
    for kind in BackendKind::ALL {
        let name = kind.as_str();
        let dir = root.join(name);
        if dir.is_dir() {
            backends.push(check_backend(name, &dir, repair)?);
        }
    }
    Ok(Report {
        root: root.to_owned(),
        backends,
        repair,
    })
}

/// A directory entry under `snapshots/`.
struct DirEntry {
    name: String,
    path: PathBuf,
    entry: Entry,
}

fn list_dirs(dir: &Path) -> Result<Vec<DirEntry>, FsckError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("readdir", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("readdir", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push(DirEntry {
            entry: Layout::classify(&name),
            path: entry.path(),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
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

fn check_backend(name: &str, dir: &Path, repair: bool) -> Result<BackendReport, FsckError> {
    let layout = Layout::new(dir);
    let entries = list_dirs(layout.snapshots())?;
    let mut report = BackendReport {
        backend: name.to_owned(),
        path: dir.to_owned(),
        snapshots: 0,
        directories: entries.len() as u64,
        findings: Vec::new(),
    };
    if !layout.metadata().exists() {
        // Without a store nothing says which directories are live: never delete them.
        if !entries.is_empty() {
            let problem = Problem::MissingStore {
                directories: entries.len() as u64,
            };
            report.findings.push(Finding {
                message: problem.to_string(),
                problem,
                repaired: false,
                action: repair.then(|| {
                    "nothing: without metadata no directory can be told live or dead; restore \
                     metadata.redb from a backup"
                        .to_owned()
                }),
            });
        }
        return Ok(report);
    }
    let store_err = |source| FsckError::Store {
        backend: name.to_owned(),
        source,
    };
    let store = Store::open(&layout.metadata()).map_err(store_err)?;
    let mut records: BTreeMap<String, Record> = BTreeMap::new();
    store
        .read(&Ctx::background(), |tx| {
            tx.for_each(&mut |key, record| {
                records.insert(key.to_owned(), record);
                Ok(())
            })
        })
        .map_err(store_err)?;
    report.snapshots = records.len() as u64;

    let problems = find_problems(name, &layout, &entries, &records);
    // A parent whose record is gone may have left its directory behind as an "orphan": it is
    // then the only copy of a layer its children need, and a restored store would want it.
    let keep_unknown = problems
        .iter()
        .any(|p| matches!(p, Problem::BrokenParent { .. }));
    for problem in problems {
        let (repaired, action) = if repair {
            match fix(name, &problem, &layout, &store, keep_unknown) {
                Ok(Fix::Done(what)) => (true, Some(what)),
                Ok(Fix::Left(why)) => (false, Some(why)),
                Err(e) => (false, Some(format!("repair failed: {e}"))),
            }
        } else {
            (false, None)
        };
        report.findings.push(Finding {
            message: problem.to_string(),
            problem,
            repaired,
            action,
        });
    }
    store.close();
    Ok(report)
}

/// Compares `records` with `entries` (and, for committed snapshots, their usage with a walk).
fn find_problems(
    backend: &str,
    layout: &Layout,
    entries: &[DirEntry],
    records: &BTreeMap<String, Record>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ids: HashSet<u64> = records.values().map(|r| r.id).collect();
    for e in entries {
        let why = match e.entry {
            Entry::Snapshot(id) if ids.contains(&id) => continue,
            Entry::Snapshot(_) => "unknown-id",
            Entry::Temp => "leftover",
            Entry::Foreign => "foreign",
        };
        problems.push(Problem::OrphanDirectory {
            name: e.name.clone(),
            why,
            bytes: bytes_of(&e.path),
        });
    }

    let mut children: HashMap<&str, Vec<String>> = HashMap::new();
    for (key, r) in records {
        if !r.parent.is_empty() {
            children.entry(&r.parent).or_default().push(key.clone());
        }
    }
    let mut without_dir = HashSet::new();
    let mut progress = Progress::new(format!("fsck {backend}"), "snapshots", records.len() as u64);
    let mut drift = Vec::new();
    for (key, r) in records {
        let fs = layout.fs(r.id);
        if !fs.is_dir() {
            without_dir.insert(key.as_str());
            problems.push(Problem::MissingDirectory {
                key: key.clone(),
                id: r.id,
                kind: r.kind.as_str(),
                children: children.get(key.as_str()).cloned().unwrap_or_default(),
            });
        } else {
            if backend == "btrfs" {
                problems.extend(subvolume_problem(layout, key, r));
            }
            if r.kind != Kind::Committed {
                progress.tick();
                continue;
            }
            // A walk that fails (permissions, I/O) says nothing about drift; the missing or
            // unreadable directory is reported elsewhere or by the daemon.
            if let Ok(du) = committed_usage(backend, layout, records, r, &fs) {
                let found = Usage {
                    size: du.bytes as i64,
                    inodes: du.inodes as i64,
                };
                if r.usage != Some(found) {
                    drift.push(Problem::UsageDrift {
                        key: key.clone(),
                        id: r.id,
                        recorded: r.usage.map(UsageJson::from),
                        found: found.into(),
                    });
                }
            }
        }
        progress.tick();
    }
    progress.finish();

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

/// A committed snapshot's usage as its backend records it: on btrfs, what its subvolume holds
/// beyond its parent's; elsewhere, a walk of its directory.
fn committed_usage(
    backend: &str,
    layout: &Layout,
    records: &BTreeMap<String, Record>,
    r: &Record,
    fs: &Path,
) -> std::io::Result<strata_sys::usage::DiskUsage> {
    match records.get(&r.parent) {
        Some(parent) if backend == "btrfs" => {
            strata_sys::usage::diff_usage_until(fs, &layout.fs(parent.id), &|| false)
        }
        _ => disk_usage(fs),
    }
}

/// btrfs: how snapshot `key`'s subvolume disagrees with its record, if it does.
fn subvolume_problem(layout: &Layout, key: &str, r: &Record) -> Option<Problem> {
    match strata_backend::btrfs::subvolume_state(layout, r.id, r.kind).ok()? {
        SubvolumeState::Good => None,
        SubvolumeState::NotASubvolume => Some(Problem::NotASubvolume {
            key: key.to_owned(),
            id: r.id,
        }),
        SubvolumeState::WrongFlag { readonly } => Some(Problem::ReadOnlyFlag {
            key: key.to_owned(),
            id: r.id,
            kind: r.kind.as_str(),
            readonly,
        }),
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

enum Fix {
    Done(String),
    Left(String),
}

fn fix(
    backend: &str,
    problem: &Problem,
    layout: &Layout,
    store: &Store,
    keep_unknown: bool,
) -> Result<Fix, FsckError> {
    Ok(match problem {
        Problem::OrphanDirectory {
            name,
            why: "unknown-id",
            ..
        } if keep_unknown => Fix::Left(format!(
            "snapshots/{name}: some snapshot's parent record is missing, and this directory may \
             be that parent's layer; restore the metadata, or remove the broken chain, then \
             run fsck again"
        )),
        Problem::OrphanDirectory { name, .. } => {
            let path = layout.snapshots().join(name);
            let removed = if path.is_dir() && !path.is_symlink() && backend == "btrfs" {
                strata_backend::btrfs::remove_snapshot_dir(&path)
            } else if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io("remove", &path))?;
            Fix::Done(format!("removed snapshots/{name}"))
        }
        Problem::UsageDrift { key, found, .. } => {
            let (k, usage) = (
                key.clone(),
                Usage {
                    size: found.size,
                    inodes: found.inodes,
                },
            );
            store
                .write(&Ctx::background(), move |tx| tx.set_usage(&k, usage))
                .map_err(|source| FsckError::Store {
                    backend: backend.to_owned(),
                    source,
                })?;
            Fix::Done("recorded the usage the walk found".to_owned())
        }
        Problem::MissingDirectory {
            key, id, children, ..
        } => {
            if !children.is_empty() {
                return Ok(Fix::Left(format!(
                    "its record: removing it would leave {} without a parent; restore \
                     snapshots/{id} from a backup, or remove the children first",
                    quoted_list(children)
                )));
            }
            // The store's own remove checks its parents index once more.
            let k = key.clone();
            match store.write(&Ctx::background(), move |tx| tx.remove(&k).map(|_| ())) {
                Ok(()) => Fix::Done(format!(
                    "removed the record of {key:?}; containerd will find it gone (NotFound) and \
                     recreate it if it still needs it"
                )),
                Err(e) => Fix::Left(format!("its record: the store refused to remove it: {e}")),
            }
        }
        Problem::BrokenParent { parent, .. } => Fix::Left(format!(
            "nothing: no repair brings back {parent:?}; restore the metadata from a backup, or \
             remove this snapshot (`strata rm`) once nothing needs it"
        )),
        Problem::ChildOfMissingParent { .. } => Fix::Left(
            "nothing: it is intact, its ancestor is not; see that ancestor's problem".to_owned(),
        ),
        Problem::ReadOnlyFlag { id, readonly, .. } => {
            let fs = layout.fs(*id);
            strata_sys::btrfs::set_readonly(&fs, !readonly).map_err(io("btrfs set flags", &fs))?;
            Fix::Done(format!(
                "made snapshots/{id}/fs {}",
                if *readonly { "writable" } else { "read-only" }
            ))
        }
        Problem::NotASubvolume { .. } => Fix::Left(
            "nothing: it works as it is; to get a subvolume back, remove the snapshot and let \
             containerd recreate it"
                .to_owned(),
        ),
        Problem::MissingStore { .. } => Fix::Left("nothing".to_owned()),
    })
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
