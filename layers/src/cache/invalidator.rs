use std::fmt;
use std::sync::Arc;

use vantage_core::Result;

use super::row_index::RowChange;
use super::shared::Shared;
use crate::stats::Stats;

/// A handle that drops every slot of one [`CacheLayer`](super::CacheLayer)'s
/// cache_key, exactly as a successful write through the layer does.
///
/// Get one from [`CacheLayer::invalidator`](super::CacheLayer::invalidator).
/// Its invalidations share the layer's guarantees: a read that missed and is
/// still fetching when [`invalidate`](Invalidator::invalidate) is called does
/// not install its rows (no stale fill), and a failing backend makes the
/// reads of every layer sharing the backend and cache_key bypass the cache
/// until an invalidation started after the failure succeeds.
///
/// Cheap to clone; clones invalidate the same cache_key.
#[derive(Clone)]
pub struct Invalidator {
    shared: Arc<Shared>,
}

impl Invalidator {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Drop every slot of the cache_key.
    ///
    /// On error the cache_key is left unclean (reads bypass the backend)
    /// until an invalidation started later succeeds; the error is the
    /// backend's.
    pub async fn invalidate(&self) -> Result<()> {
        self.shared.invalidate().await
    }

    /// Drop what a change to one row can make wrong: with row-level
    /// invalidation on (see
    /// [`CacheLayer::with_row_invalidation`](super::CacheLayer::with_row_invalidation)),
    /// only the slots [`RowChange`] names; otherwise the whole cache_key, as
    /// [`invalidate`](Invalidator::invalidate) does. Errors as for
    /// `invalidate`.
    ///
    /// The event layer calls it for `Inserted`, `Updated` and `Deleted`
    /// events.
    pub async fn invalidate_row(&self, change: &RowChange) -> Result<()> {
        self.shared.invalidate_change(Some(change)).await
    }

    /// Mark every slot of the cache_key filled so far as stale, if the
    /// layer has a stale-while-revalidate window: such slots are served at
    /// once and refreshed in the background, never served as fresh again
    /// (see [`Freshness`](super::Freshness#stale-marks)). Without a window
    /// this is [`invalidate`](Invalidator::invalidate): a slot that may be
    /// out of date is dropped.
    ///
    /// The event layer calls it when its task (re)subscribes.
    pub async fn mark_stale(&self) -> Result<()> {
        if self.shared.freshness.stale_while_revalidate().is_some() {
            self.shared.mark_stale();
            return Ok(());
        }
        self.invalidate().await
    }

    /// Where the cache_key's invalidations stand: a number that moves on
    /// every invalidation through any stack sharing the backend (writes,
    /// events, invalidator calls), before it drops anything. Two equal
    /// readings mean no invalidation started in between.
    pub fn generation(&self) -> u64 {
        self.shared.namespace.generation()
    }

    /// Where the cache_key's invalidations stand, in this process and in
    /// any store the backend shares with other processes (one trip to it,
    /// for such a backend): two equal readings mean no invalidation
    /// started in between through any process. `None` if the shared store
    /// could not be read: nothing can then be ruled out.
    pub async fn fence(&self) -> Option<(u64, Option<u64>)> {
        let local = self.shared.namespace.generation();
        let shared = self
            .shared
            .fenced
            .shared_generation(&self.shared.namespace)
            .await
            .ok()?;
        Some((local, shared))
    }

    /// The counters of the layer this handle invalidates for.
    pub(crate) fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The cache_key this handle invalidates.
    pub fn cache_key(&self) -> &str {
        self.shared.keys.cache_key()
    }
}

impl fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidator")
            .field("cache_key", &self.cache_key())
            .finish()
    }
}
