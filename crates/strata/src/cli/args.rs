//! The client subcommands' arguments (clap), shared by `main.rs` and the completions.

use std::path::PathBuf;

use crate::config::DEFAULT_ADDRESS;

/// How to reach the daemon; every client subcommand takes these.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Unix socket the daemon serves
    #[arg(long, value_name = "SOCKET", default_value = DEFAULT_ADDRESS)]
    pub address: PathBuf,
    /// Backend to address, as the request's `snapshotter` field: overlay, native,
    /// strata-native…; empty means the daemon's default backend
    #[arg(long, value_name = "NAME", default_value = "")]
    pub snapshotter: String,
}

/// `--json` for commands that print a listing.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The subcommands that talk to a running daemon (and `umount`, their counterpart).
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// List snapshots, optionally filtered
    ///
    /// Filters use containerd's syntax and several are OR-ed: `kind==active`, `parent==base`,
    /// `labels."containerd.io/gc.root"`, `name~=^sha256`, `kind==view,parent==base`.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show snapshots as a tree of parents and children
    Tree(TreeArgs),
    /// Show one snapshot's kind, parent, times and labels (Stat)
    Info(KeyArgs),
    /// Disk usage of one snapshot alone, or of every snapshot with totals
    Usage(UsageArgs),
    /// Create an active (writable) snapshot KEY on the committed snapshot PARENT
    Prepare(CreateArgs),
    /// Create a read-only view KEY of the committed snapshot PARENT
    View(CreateArgs),
    /// Commit the active snapshot KEY as NAME
    Commit(CommitArgs),
    /// Remove snapshots (their directories go at the next cleanup)
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Set labels (`k=v`) or remove them (`k=`) on a snapshot
    Label(LabelArgs),
    /// Print a snapshot's mounts as `mount` command lines
    Mounts(MountsArgs),
    /// Remove the directories of removed snapshots and crash leftovers
    Cleanup(CleanupArgs),
    /// Mount a snapshot (its Mounts) on a directory
    Mount(MountArgs),
    /// Unmount what `strata mount` mounted on a directory
    Umount(UmountArgs),
}

/// `strata ls`.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Filters; a snapshot is listed if it matches any of them
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Another filter (same as a positional one)
    #[arg(long = "filter", value_name = "FILTER")]
    pub more_filters: Vec<String>,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonArg,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata tree`.
#[derive(clap::Args, Debug)]
pub struct TreeArgs {
    /// `--json`.
    #[command(flatten)]
    pub json: JsonArg,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A command on one snapshot key.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// The snapshot's key (or name, for a committed one)
    pub key: String,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonArg,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata usage`.
#[derive(clap::Args, Debug)]
pub struct UsageArgs {
    /// The snapshot; without it, every snapshot and the totals
    pub key: Option<String>,
    /// Sizes in bytes rather than KiB, MiB, …
    #[arg(long)]
    pub bytes: bool,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonArg,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata prepare` and `strata view`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Key of the new snapshot
    pub key: String,
    /// Committed parent; none for a base layer
    #[arg(default_value = "")]
    pub parent: String,
    /// A label for the new snapshot (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Print the new snapshot's mounts as `mount` command lines
    #[arg(long)]
    pub mounts: bool,
    /// Mount point shown in the printed command lines
    #[arg(long, default_value = "/mnt", requires = "mounts")]
    pub target: String,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata commit`.
#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// Name of the committed snapshot
    pub name: String,
    /// Key of the active snapshot to commit
    pub key: String,
    /// A label for the committed snapshot (repeatable; they replace the active one's)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata rm`.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Snapshots to remove, children before parents
    #[arg(required = true)]
    pub keys: Vec<String>,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata label`.
#[derive(clap::Args, Debug)]
pub struct LabelArgs {
    /// The snapshot
    pub key: String,
    /// `k=v` sets label k; `k=` removes it
    #[arg(value_name = "K=V", required = true)]
    pub labels: Vec<String>,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonArg,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata mounts`.
#[derive(clap::Args, Debug)]
pub struct MountsArgs {
    /// An active snapshot or a view
    pub key: String,
    /// Mount point shown in the command lines
    #[arg(long, default_value = "/mnt")]
    pub target: String,
    /// `--json`.
    #[command(flatten)]
    pub json: JsonArg,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata cleanup`.
#[derive(clap::Args, Debug)]
pub struct CleanupArgs {
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// An active snapshot or a view
    pub key: String,
    /// An existing directory to mount it on
    pub target: PathBuf,
    /// The daemon to talk to.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `strata umount`.
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Where `strata mount` mounted a snapshot
    pub target: PathBuf,
    /// Detach now and clean up when no longer busy (`MNT_DETACH`)
    #[arg(long)]
    pub lazy: bool,
}
