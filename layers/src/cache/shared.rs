//! The state one [`CacheLayer`](super::CacheLayer) shares with every
//! service it builds and its invalidators: the backend, the cache_key's
//! namespace, the counters and the policies, and the invalidations they run.

use std::sync::Arc;

use tracing::Instrument as _;

use super::backend::Cache;
use super::cached::CachedSlot;
use super::freshness::{Age, Freshness};
use super::generations::Namespace;
use super::legacy::LayerFenced;
use super::row_index::RowChange;
use super::slot::SlotKeys;
use crate::stats::Stats;

/// State shared by every clone of one [`CacheLayer`](super::CacheLayer) and
/// the services it built.
pub(crate) struct Shared {
    /// The backend as given.
    pub(crate) cache: Arc<dyn Cache>,
    /// The backend the layer talks to: the one given if it owns its
    /// invalidation state, else the given one with state of this layer's.
    pub(crate) fenced: Arc<dyn Cache>,
    pub(crate) keys: SlotKeys,
    /// The stack's counters (see [`Stats`]).
    pub(crate) stats: Arc<Stats>,
    /// This cache_key's invalidation state, in the backend.
    pub(crate) namespace: Arc<Namespace>,
    /// How old a slot may be, and the clock that says.
    pub(crate) freshness: Freshness,
    /// Writes and events that name a row drop only the slots it can
    /// change, where the backend can (see [`RowChange`]).
    pub(crate) row_invalidation: bool,
}

impl Shared {
    pub(crate) fn new(cache: Arc<dyn Cache>, keys: SlotKeys) -> Self {
        let fenced: Arc<dyn Cache> = match cache.generations() {
            Some(_) => cache.clone(),
            None => Arc::new(LayerFenced::new(cache.clone())),
        };
        let namespace = match fenced.generations() {
            Some(generations) => generations.namespace(keys.namespace()),
            // `LayerFenced` always has them; a backend that answers `Some`
            // once and `None` later is given a private namespace.
            None => super::Generations::new().namespace(keys.namespace()),
        };
        Self {
            cache,
            fenced,
            keys,
            stats: Arc::new(Stats::new()),
            namespace,
            freshness: Freshness::default(),
            row_invalidation: false,
        }
    }

    /// The same layer state (backend, namespace, counters) under another
    /// freshness policy.
    pub(crate) fn with_freshness(&self, freshness: Freshness) -> Self {
        Self {
            cache: self.cache.clone(),
            fenced: self.fenced.clone(),
            keys: self.keys.clone(),
            stats: self.stats.clone(),
            namespace: self.namespace.clone(),
            freshness,
            row_invalidation: self.row_invalidation,
        }
    }

    /// The same layer state with row-level invalidation on (it turns the
    /// namespace's row index on, if the backend can drop rows).
    pub(crate) fn with_row_invalidation(&self) -> Self {
        if self.fenced.drops_rows() {
            self.namespace.enable_row_index();
        }
        Self {
            row_invalidation: true,
            ..self.with_freshness(self.freshness.clone())
        }
    }

    /// How `slot` stands against the freshness policy now.
    pub(super) fn age(&self, slot: &CachedSlot) -> Age {
        if !self.freshness.ages_slots() {
            return Age::Fresh;
        }
        self.freshness.judge(slot, self.namespace.stale_before())
    }

    /// Mark every slot filled so far as stale (see
    /// [`Freshness`](super::Freshness#stale-marks)).
    pub(crate) fn mark_stale(&self) {
        self.namespace.mark_stale(self.freshness.now());
        // Slots that may miss changes nobody reported: the row index can no
        // longer vouch that a slot without a written row is current, so the
        // next row-level change drops the whole cache_key (if anything was
        // ever stored: an empty namespace has no such slot).
        if self.namespace.fills() > 0 {
            self.namespace.stored_unrecorded();
        }
    }

    /// Drop every slot of this cache_key. The backend moves the namespace's
    /// generation first (fencing every fill in flight). If it fails, the
    /// namespace is left unclean (by the backend, and here again, in case a
    /// backend does not): reads bypass it until an invalidation started
    /// after this one succeeds.
    pub(crate) async fn invalidate(&self) -> vantage_core::Result<()> {
        let prefix = self.keys.prefix();
        let outcome = self
            .fenced
            .invalidate_prefix(prefix)
            .instrument(tracing::debug_span!("cache.invalidate_prefix", prefix))
            .await;
        match &outcome {
            Ok(()) => self.stats.invalidated(),
            Err(_) => self.namespace.poison(),
        }
        outcome
    }

    /// Drop what `change` can make wrong: with row-level invalidation on
    /// and a backend that drops rows, the slots [`RowChange`] says (or the
    /// whole cache_key, if the backend's index cannot tell); otherwise, or
    /// without a change (`delete_all`, a bare `Changed` event), the whole
    /// cache_key. Failures leave the namespace unclean, as
    /// [`Shared::invalidate`] does.
    pub(crate) async fn invalidate_change(
        &self,
        change: Option<&RowChange>,
    ) -> vantage_core::Result<()> {
        let Some(change) = change.filter(|_| self.row_invalidation && self.fenced.drops_rows())
        else {
            return self.invalidate().await;
        };
        let outcome = self
            .fenced
            .invalidate_rows(&self.namespace, change)
            .instrument(tracing::debug_span!(
                "cache.invalidate_rows",
                change = change.kind(),
                id = change.id()
            ))
            .await;
        match &outcome {
            Ok(()) => self.stats.rows_invalidated(),
            Err(_) => self.namespace.poison(),
        }
        outcome
    }

    /// Whether the backend can be trusted for reads: clean, or the retried
    /// invalidation now succeeded.
    pub(super) async fn usable(&self) -> bool {
        if !self.namespace.is_unclean() {
            return true;
        }
        match self.invalidate().await {
            Ok(()) if !self.namespace.is_unclean() => {
                tracing::info!(
                    cache_key = self.keys.cache_key(),
                    "cache invalidation recovered"
                );
                true
            }
            // Failed, or a newer failure still stands.
            _ => false,
        }
    }
}
