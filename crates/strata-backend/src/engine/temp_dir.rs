//! The directory a Prepare or View builds before renaming it into place.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use strata_core::{Error, Result, crash};

use super::Engine;
use crate::Driver;
use crate::layout::TEMP_PREFIX;

/// A `new-<n>` directory under construction, removed on drop unless it was renamed into
/// place.
pub(super) struct TempDir<'a, D: Driver> {
    path: PathBuf,
    armed: bool,
    driver: &'a D,
}

impl<'a, D: Driver> TempDir<'a, D> {
    pub(super) fn new(engine: &'a Engine<D>) -> Result<TempDir<'a, D>> {
        let n = engine.temp_seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{TEMP_PREFIX}{}-{n}", std::process::id());
        let path = engine.layout.snapshots().join(name);
        crash::fault("mkdir")
            .and_then(|()| std::fs::create_dir(&path))
            .map_err(|e| Error::io("mkdir", &path, e))?;
        Ok(TempDir {
            path,
            armed: true,
            driver: &engine.driver,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<D: Driver> Drop for TempDir<'_, D> {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = self.driver.destroy(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove temporary directory; it is removed at the next start");
        }
    }
}
