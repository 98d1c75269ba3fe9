//! `strata fsck`: compares each backend's metadata with its directories while the daemon is
//! stopped, and with `--repair` fixes what is safe to fix. The checks and repairs are the
//! backend's own ([`strata_backend::check`], where the table of problems and repairs lives);
//! this module takes the arguments, holds the root's lock as the daemon does (so it refuses to
//! run beside one: a live daemon creates and removes directories as it goes), and renders the
//! findings as text or JSON.

use std::path::{Path, PathBuf};

use serde::Serialize;
use strata_backend::check::{self, Left, Outcome, Repair, SnapshotFault};
use strata_backend::{BackendKind, OpenError, Orphan, lock_path, lock_root};
use strata_core::Usage;

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
    /// A backend could not be checked (its store cannot be opened, its directory read…).
    #[error("{backend}: {source}")]
    Backend {
        /// The backend.
        backend: BackendKind,
        /// What failed.
        source: OpenError,
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
        /// `unknown-id`, `leftover` (`new-*`, a crash during a Prepare of an earlier version) or `foreign`.
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
    let lock = lock_path(root);
    let _lock = lock_root(root)
        .map_err(io("lock", &lock))?
        .ok_or_else(|| FsckError::Locked {
            root: root.to_owned(),
            lock: lock.clone(),
        })?;
    let mut backends = Vec::new();
    for kind in BackendKind::ALL {
        let dir = root.join(kind.as_str());
        if !dir.is_dir() {
            continue;
        }
        let mut progress: Option<Progress> = None;
        let checked = check::check_backend(kind, &dir, repair, &mut |_, total| {
            progress
                .get_or_insert_with(|| Progress::new(format!("fsck {kind}"), "snapshots", total))
                .tick()
        });
        if let Some(progress) = progress {
            progress.finish();
        }
        let checked = checked.map_err(|source| FsckError::Backend {
            backend: kind,
            source,
        })?;
        backends.push(BackendReport {
            backend: kind.to_string(),
            path: dir,
            snapshots: checked.snapshots,
            directories: checked.directories,
            findings: checked.findings.iter().map(finding).collect(),
        });
    }
    Ok(Report {
        root: root.to_owned(),
        backends,
        repair,
    })
}

/// A backend's finding as the report shows it.
fn finding(f: &check::Finding) -> Finding {
    let problem = view(&f.problem);
    Finding {
        message: problem.to_string(),
        repaired: f.repaired(),
        action: f.outcome.as_ref().map(|o| action(&f.problem, o)),
        problem,
    }
}

/// The report's (and the JSON's) form of a problem.
fn view(p: &check::Problem) -> Problem {
    match p {
        check::Problem::OrphanDirectory { name, why, bytes } => Problem::OrphanDirectory {
            name: name.clone(),
            why: match why {
                Orphan::UnknownId => "unknown-id",
                Orphan::Leftover => "leftover",
                Orphan::Foreign => "foreign",
            },
            bytes: *bytes,
        },
        check::Problem::MissingDirectory {
            key,
            id,
            kind,
            children,
        } => Problem::MissingDirectory {
            key: key.clone(),
            id: *id,
            kind: kind.as_str(),
            children: children.clone(),
        },
        check::Problem::BrokenParent { key, parent } => Problem::BrokenParent {
            key: key.clone(),
            parent: parent.clone(),
        },
        check::Problem::ChildOfMissingParent { key, ancestor } => Problem::ChildOfMissingParent {
            key: key.clone(),
            ancestor: ancestor.clone(),
        },
        check::Problem::UsageDrift {
            key,
            id,
            recorded,
            found,
        } => Problem::UsageDrift {
            key: key.clone(),
            id: *id,
            recorded: recorded.map(UsageJson::from),
            found: (*found).into(),
        },
        check::Problem::SnapshotFault {
            key,
            id,
            kind,
            fault: SnapshotFault::ReadOnlyFlag { readonly },
        } => Problem::ReadOnlyFlag {
            key: key.clone(),
            id: *id,
            kind: kind.as_str(),
            readonly: *readonly,
        },
        check::Problem::SnapshotFault {
            key,
            id,
            fault: SnapshotFault::NotASubvolume,
            ..
        } => Problem::NotASubvolume {
            key: key.clone(),
            id: *id,
        },
        check::Problem::MissingStore { directories } => Problem::MissingStore {
            directories: *directories,
        },
    }
}

/// What a repair did, or why it did nothing, in words.
fn action(problem: &check::Problem, outcome: &Outcome) -> String {
    let name = match problem {
        check::Problem::OrphanDirectory { name, .. } => name.as_str(),
        _ => "",
    };
    let (key, id) = match problem {
        check::Problem::MissingDirectory { key, id, .. }
        | check::Problem::SnapshotFault { key, id, .. } => (key.as_str(), *id),
        _ => ("", 0),
    };
    match outcome {
        Outcome::Repaired(Repair::RemovedOrphan) => format!("removed snapshots/{name}"),
        Outcome::Repaired(Repair::RecordedUsage) => "recorded the usage the walk found".to_owned(),
        Outcome::Repaired(Repair::RemovedRecord) => format!(
            "removed the record of {key:?}; containerd will find it gone (NotFound) and \
             recreate it if it still needs it"
        ),
        Outcome::Repaired(Repair::SetReadOnlyFlag { readonly }) => format!(
            "made snapshots/{id}/fs {}",
            if *readonly { "read-only" } else { "writable" }
        ),
        Outcome::Left(Left::MayBeLostParent) => format!(
            "snapshots/{name}: some snapshot's parent record is missing, and this directory may \
             be that parent's layer; restore the metadata, or remove the broken chain, then \
             run fsck again"
        ),
        Outcome::Left(Left::HasChildren(children)) => format!(
            "its record: removing it would leave {} without a parent; restore \
             snapshots/{id} from a backup, or remove the children first",
            quoted_list(children)
        ),
        Outcome::Left(Left::ParentGone(parent)) => format!(
            "nothing: no repair brings back {parent:?}; restore the metadata from a backup, or \
             remove this snapshot (`strata rm`) once nothing needs it"
        ),
        Outcome::Left(Left::AncestorDamaged) => {
            "nothing: it is intact, its ancestor is not; see that ancestor's problem".to_owned()
        }
        Outcome::Left(Left::NoStore) => "nothing: without metadata no directory can be told \
             live or dead; restore metadata.redb from a backup"
            .to_owned(),
        Outcome::Left(Left::WorksAsIs) => "nothing: it works as it is; to get a subvolume back, \
             remove the snapshot and let containerd recreate it"
            .to_owned(),
        Outcome::Left(Left::Failed(e)) => format!("repair failed: {e}"),
    }
}
