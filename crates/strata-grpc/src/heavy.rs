//! Bounded concurrency for heavy work: filesystem walks (Usage of an active snapshot),
//! Cleanup, and layer Apply and Diff. Each runs on a blocking thread for as long as the disk
//! makes it; unbounded, a stuck disk or a burst of requests would pile up blocking threads
//! (tokio allows 512) until the process starves. Admission is asynchronous: a request waits
//! for a slot on the runtime, costing no thread, and gives up when its deadline passes or its
//! client goes away (the handler's future is dropped). Light operations (Stat, Prepare,
//! Commit, Remove, List) never wait here, so stuck heavy work cannot block them.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// A kind of heavy work, each with its own slots, so that stuck walks never hold up a
/// Cleanup, nor a Cleanup an Apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heavy {
    /// Measuring an active snapshot's usage (a walk of its tree).
    Walk,
    /// Removing the directories of removed snapshots.
    Cleanup,
    /// Applying a layer to a snapshot, or making one from two trees.
    Layer,
}

/// How many of each kind run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeavyLimits {
    /// Usage walks.
    pub walks: usize,
    /// Cleanups.
    pub cleanups: usize,
    /// Applies and Diffs together.
    pub layers: usize,
}

impl Default for HeavyLimits {
    /// Walks and layers: twice the CPUs, at least 4 (they wait on the disk as much as they
    /// compute); Cleanups: 2 (one Cleanup takes every directory there is to remove, so a
    /// second one at the same time mostly finds nothing; two let one backend's slow Cleanup
    /// not hold up another's).
    fn default() -> HeavyLimits {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        HeavyLimits {
            walks: (2 * cpus).max(4),
            cleanups: 2,
            layers: (2 * cpus).max(4),
        }
    }
}

/// The slots of each kind of heavy work.
#[derive(Debug, Clone)]
pub struct HeavyWork {
    walks: Arc<Semaphore>,
    cleanups: Arc<Semaphore>,
    layers: Arc<Semaphore>,
}

impl Default for HeavyWork {
    fn default() -> HeavyWork {
        HeavyWork::new(HeavyLimits::default())
    }
}

impl HeavyWork {
    /// Slots as `limits` say (each at least 1).
    pub fn new(limits: HeavyLimits) -> HeavyWork {
        let slots = |n: usize| Arc::new(Semaphore::new(n.max(1)));
        HeavyWork {
            walks: slots(limits.walks),
            cleanups: slots(limits.cleanups),
            layers: slots(limits.layers),
        }
    }

    /// Waits for a slot of `kind`; the work holds the returned permit until it ends (on its
    /// blocking thread, even if the client has gone: the slot counts threads, not requests).
    /// A request whose `deadline` passes while it waits is `DeadlineExceeded`, having started
    /// nothing.
    pub async fn admit(
        &self,
        kind: Heavy,
        op: &str,
        deadline: Option<Instant>,
    ) -> Result<OwnedSemaphorePermit, Status> {
        let slots = match kind {
            Heavy::Walk => &self.walks,
            Heavy::Cleanup => &self.cleanups,
            Heavy::Layer => &self.layers,
        };
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Ok(permit);
        }
        tracing::debug!(op, ?kind, "every slot busy; waiting");
        let acquire = Arc::clone(slots).acquire_owned();
        let permit = match deadline {
            None => acquire.await,
            Some(deadline) => {
                tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), acquire)
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded(format!(
                            "{op}: deadline passed while waiting for one of the {kind:?} slots \
                             (all busy with earlier requests)"
                        ))
                    })?
            }
        };
        // The semaphore is never closed.
        Ok(permit.expect("heavy-work semaphore closed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// With every slot of a kind taken, the next request waits (backpressure), gives up at its
    /// deadline, and gets a slot as soon as one frees; other kinds are not held up.
    #[tokio::test]
    async fn bounded_with_backpressure() {
        let heavy = HeavyWork::new(HeavyLimits {
            walks: 2,
            cleanups: 1,
            layers: 1,
        });
        let a = heavy.admit(Heavy::Walk, "usage", None).await.unwrap();
        let _b = heavy.admit(Heavy::Walk, "usage", None).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        let late = heavy
            .admit(Heavy::Walk, "usage", Some(soon))
            .await
            .unwrap_err();
        assert_eq!(late.code(), tonic::Code::DeadlineExceeded, "{late:?}");
        assert!(late.message().contains("Walk slots"), "{late:?}");
        // Other kinds have their own slots.
        let _cleanup = heavy.admit(Heavy::Cleanup, "cleanup", None).await.unwrap();
        let _layer = heavy.admit(Heavy::Layer, "apply", None).await.unwrap();

        let waiting = {
            let heavy = heavy.clone();
            tokio::spawn(async move { heavy.admit(Heavy::Walk, "usage", None).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a third walk must wait");
        drop(a);
        let _admitted = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("admitted once a slot frees")
            .unwrap()
            .unwrap();
    }
}
