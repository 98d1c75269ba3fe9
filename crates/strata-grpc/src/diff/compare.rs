//! The Diff of two stacks of Strata layers that are not one layer apart (say, a snapshot
//! against its grandparent, or two unrelated snapshots): the trees both stacks show are
//! compared, as containerd's walking differ does. A stack of one layer is that directory; a
//! deeper one is mounted read-only as an overlay attached to no directory (reached through
//! its descriptor, gone when dropped), so nothing is mounted where anyone could see it and
//! nothing can be left mounted, even if the daemon dies meanwhile.

use std::io::{self, Write};
use std::path::PathBuf;

use strata_layer::export::{Exported, export_compare};
use strata_layer::media::Compression;
use strata_layer::{LayerError, Result};
use strata_sys::mount::{Detached, detached_empty, detached_overlay};

use strata_layer::stack::Stack;

/// Compares the trees `lower` and `upper` stack, writing the layer of their difference to
/// `out`.
pub(crate) fn stacks(
    lower: &Stack,
    upper: &Stack,
    compression: Compression,
    epoch: Option<i64>,
    out: impl Write,
    cancelled: &dyn Fn() -> bool,
) -> Result<Exported> {
    let lower = Tree::of(lower)?;
    let upper = Tree::of(upper)?;
    export_compare(
        &lower.path(),
        &upper.path(),
        compression,
        epoch,
        out,
        cancelled,
    )
}

/// The tree a stack shows, readable at [`Tree::path`] while it lives.
enum Tree {
    Dir(PathBuf),
    Mounted(Detached),
}

impl Tree {
    fn of(stack: &Stack) -> Result<Tree> {
        let mounted = |m: io::Result<Detached>| {
            m.map(Tree::Mounted)
                .map_err(|e| LayerError::io("mount", format!("{:?}", stack.layers), e))
        };
        match stack.layers.as_slice() {
            [] => mounted(detached_empty()),
            [one] => Ok(Tree::Dir(one.clone())),
            many => {
                let layers = many
                    .iter()
                    .map(|p| {
                        p.to_str().ok_or_else(|| {
                            LayerError::io(
                                "mount",
                                p.display().to_string(),
                                io::Error::new(io::ErrorKind::InvalidInput, "path is not UTF-8"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                mounted(detached_overlay(&layers))
            }
        }
    }

    fn path(&self) -> PathBuf {
        match self {
            Tree::Dir(dir) => dir.clone(),
            Tree::Mounted(mount) => mount.path(),
        }
    }
}
