//! The rows of the default table: what each measures, with how many clients, in which phase.

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Prepare,
    PrepareParent,
    View,
    Commit,
    Remove,
    Stat,
    Mounts,
    ListSmall,
    ListFilter,
    UsageActive,
    UsageCommitted,
    CommitLarge,
    Chain,
}

/// The state a group of rows needs on both servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Each measurement makes and removes its own snapshots.
    SelfContained,
    /// `LIST_SMALL` snapshots exist.
    ListSmall,
    /// `LIST_LARGE` snapshots exist.
    ListLarge,
    /// The two 10,000-file snapshots of the Usage rows exist.
    Usage,
}

pub(super) struct RowDef {
    pub(super) id: &'static str,
    pub(super) title: &'static str,
    pub(super) op: Op,
    pub(super) phase: Phase,
    pub(super) clients: usize,
    pub(super) note: &'static str,
}

const fn row(
    id: &'static str,
    title: &'static str,
    op: Op,
    phase: Phase,
    clients: usize,
    note: &'static str,
) -> RowDef {
    RowDef {
        id,
        title,
        op,
        phase,
        clients,
        note,
    }
}

pub(super) const ROWS: &[RowDef] = &[
    row(
        "prepare/1",
        "Prepare (no parent)",
        Op::Prepare,
        Phase::SelfContained,
        1,
        "",
    ),
    row(
        "prepare/8",
        "Prepare (no parent)",
        Op::Prepare,
        Phase::SelfContained,
        8,
        "",
    ),
    row(
        "prepare-parent/1",
        "Prepare on a parent",
        Op::PrepareParent,
        Phase::SelfContained,
        1,
        "",
    ),
    row(
        "prepare-parent/8",
        "Prepare on a parent",
        Op::PrepareParent,
        Phase::SelfContained,
        8,
        "",
    ),
    row("view/1", "View", Op::View, Phase::SelfContained, 1, ""),
    row("view/8", "View", Op::View, Phase::SelfContained, 8, ""),
    row(
        "commit/1",
        "Commit (1-file layer)",
        Op::Commit,
        Phase::SelfContained,
        1,
        "",
    ),
    row(
        "commit/8",
        "Commit (1-file layer)",
        Op::Commit,
        Phase::SelfContained,
        8,
        "",
    ),
    row(
        "remove/1",
        "Remove",
        Op::Remove,
        Phase::SelfContained,
        1,
        "",
    ),
    row(
        "remove/8",
        "Remove",
        Op::Remove,
        Phase::SelfContained,
        8,
        "",
    ),
    row("stat/1", "Stat", Op::Stat, Phase::SelfContained, 1, ""),
    row("stat/8", "Stat", Op::Stat, Phase::SelfContained, 8, ""),
    row(
        "mounts/1",
        "Mounts (1 parent)",
        Op::Mounts,
        Phase::SelfContained,
        1,
        "",
    ),
    row(
        "mounts/8",
        "Mounts (1 parent)",
        Op::Mounts,
        Phase::SelfContained,
        8,
        "",
    ),
    row(
        "list-3000/1",
        "List, 3,000 snapshots",
        Op::ListSmall,
        Phase::ListSmall,
        1,
        "",
    ),
    row(
        "list-3000/8",
        "List, 3,000 snapshots",
        Op::ListSmall,
        Phase::ListSmall,
        8,
        "",
    ),
    row(
        "list-filter/1",
        "List, label filter, 10 of 10,000",
        Op::ListFilter,
        Phase::ListLarge,
        1,
        "",
    ),
    row(
        "list-filter/8",
        "List, label filter, 10 of 10,000",
        Op::ListFilter,
        Phase::ListLarge,
        8,
        "",
    ),
    row(
        "usage-active/1",
        "Usage, active, 10,000 files",
        Op::UsageActive,
        Phase::Usage,
        1,
        "1 client only: a walk of the tree, bound by the filesystem",
    ),
    row(
        "usage-committed/1",
        "Usage, committed, 10,000 files",
        Op::UsageCommitted,
        Phase::Usage,
        1,
        "",
    ),
    row(
        "usage-committed/8",
        "Usage, committed, 10,000 files",
        Op::UsageCommitted,
        Phase::Usage,
        8,
        "",
    ),
    row(
        "commit-10k/1",
        "Commit of a 10,000-file layer",
        Op::CommitLarge,
        Phase::SelfContained,
        1,
        "1 client only; files written and synced before the timed Commit; ops/s = 1/mean",
    ),
    row(
        "chain-128/1",
        "Chain of 128 layers, per layer",
        Op::Chain,
        Phase::SelfContained,
        1,
        "1 client only; per layer: Prepare, mount, write 4 KiB, unmount, Commit; ops/s = layers/s",
    ),
];
