//! The invalidation state of one cache_key, shared by every stack that
//! caches it in the same backend.
//!
//! Stacks built from separate [`CacheLayer`](super::CacheLayer)s (two
//! `LiveTable`s, say) that cache the same cache_key in the same backend share
//! slots, so they must share what keeps those slots honest:
//!
//! - the **epoch**, bumped at the start of every invalidation any of them
//!   makes: a fill compares it before storing, and reads join only flights
//!   started at the current epoch. This fences fills and flights across the
//!   sharers even when the backend's own [`Cache::generation`] is the
//!   default or fails;
//! - the **poison**: after a failed invalidation the backend may still hold
//!   slots older than an acknowledged write, and *every* sharer must stop
//!   serving them, not only the one whose invalidation failed. It records
//!   *which* invalidation failed, so that only an invalidation started after
//!   it clears it.
//!
//! Sharers are found by the identity of the backend (the `Arc<dyn Cache>`
//! they were given, or clones of it) and the cache_key's prefix, in a
//! process-wide registry of weak references: a fence lives as long as some
//! stack uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::backend::Cache;

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
    /// The fence shared by every stack that caches under `prefix` in `cache`.
    pub(crate) fn shared(cache: &Arc<dyn Cache>, prefix: &str) -> Arc<Fence> {
        type Registry = Mutex<HashMap<(usize, String), Weak<Fence>>>;
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        // The backend's address: every clone of one `Arc` has it, and it
        // cannot be reused while a stack holding this fence holds the `Arc`.
        let id = Arc::as_ptr(cache) as *const () as usize;
        let mut registry = REGISTRY
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let key = (id, prefix.to_owned());
        if let Some(fence) = registry.get(&key).and_then(Weak::upgrade) {
            return fence;
        }
        registry.retain(|_, fence| fence.strong_count() > 0);
        let fence = Arc::new(Fence::default());
        registry.insert(key, Arc::downgrade(&fence));
        fence
    }

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
