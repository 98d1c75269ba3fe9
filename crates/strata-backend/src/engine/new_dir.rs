//! The directory a Prepare or View builds, under the snapshot's final name, before the
//! snapshot is recorded.

use std::path::{Path, PathBuf};

use strata_core::{Error, Result, crash};

use super::Engine;
use crate::Driver;

/// `snapshots/<id>` under construction for a snapshot not yet recorded: discarded on drop
/// unless [`NewDir::keep`] says it was.
pub(super) struct NewDir<'a, D: Driver> {
    path: PathBuf,
    armed: bool,
    engine: &'a Engine<D>,
}

impl<'a, D: Driver> NewDir<'a, D> {
    /// Creates the (empty) directory of snapshot `id`, whose id was reserved for it.
    pub(super) fn create(engine: &'a Engine<D>, id: u64) -> Result<NewDir<'a, D>> {
        let path = engine.layout.dir(id);
        crash::fault("mkdir")
            .and_then(|()| std::fs::create_dir(&path))
            .map_err(|e| Error::io("mkdir", &path, e))?;
        Ok(NewDir {
            path,
            armed: true,
            engine,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot is recorded: the directory is its own now.
    pub(super) fn keep(mut self) {
        self.armed = false;
    }
}

impl<D: Driver> Drop for NewDir<'_, D> {
    fn drop(&mut self) {
        if self.armed {
            self.engine.discard(std::mem::take(&mut self.path));
        }
    }
}
