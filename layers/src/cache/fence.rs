//! The invalidation state of one cache_key: its epoch and its poison.
//!
//! - the **epoch** is bumped at the start of every invalidation: a fill
//!   compares it before storing, and reads join only flights started at the
//!   current epoch;
//! - the **poison** marks that an invalidation failed: the backend may still
//!   hold slots older than an acknowledged write, so reads bypass it until a
//!   later invalidation succeeds. It records *which* invalidation failed, so
//!   that only an invalidation started after it clears it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Invalidation state of one cache_key in one backend instance.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    /// Bumped at the start of every invalidation of the cache_key.
    epoch: AtomicU64,
    /// The epoch of the latest invalidation that failed (or write that never
    /// settled) and that no later successful invalidation has covered yet;
    /// 0 when the backend can be trusted.
    poisoned_at: AtomicU64,
}

impl Fence {
    /// The current epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Start an invalidation: bump the epoch and return the new value.
    pub(crate) fn bump(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The invalidation started at `epoch` failed (or a write that bumped to
    /// `epoch` never settled): distrust the backend.
    pub(crate) fn poison(&self, epoch: u64) {
        self.poisoned_at.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The invalidation started at `epoch` succeeded. It covers failures of
    /// invalidations started before it (it dropped the slots after their
    /// writes reached the master), not those of later ones.
    pub(crate) fn cleared(&self, epoch: u64) {
        let _ = self
            .poisoned_at
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |at| {
                (at != 0 && at < epoch).then_some(0)
            });
    }

    /// Whether an invalidation failure is not yet covered.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned_at.load(Ordering::Acquire) != 0
    }
}
