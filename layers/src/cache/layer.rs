use std::fmt;
use std::sync::Arc;

use tower::Layer;

use super::backend::Cache;
use super::invalidator::Invalidator;
use super::service::{CacheService, Shared};
use super::slot::SlotKeys;
use crate::stats::Stats;

/// Puts a [`Cache`] in front of a service, under one cache_key.
///
/// Every service this layer builds shares the layer's state, so clones of one
/// stack see each other's invalidations at once.
#[derive(Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    /// Cache under `cache_key` in `cache`. Any cache_key text works; see
    /// [`SlotKeys`] for how slots are keyed.
    pub fn new(cache: Arc<dyn Cache>, cache_key: impl Into<String>) -> Self {
        Self {
            shared: Arc::new(Shared::new(cache, SlotKeys::new(cache_key))),
        }
    }

    /// The slot keys of this layer's cache_key.
    pub fn slot_keys(&self) -> &SlotKeys {
        &self.shared.keys
    }

    /// The counters shared by every service this layer builds, its
    /// invalidators and the event layers fed by them: hits, misses, master
    /// reads, writes, invalidations, events. Take a
    /// [`snapshot`](Stats::snapshot) to read them.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// A handle that drops this layer's cache_key the way a successful write
    /// does, sharing the layer's no-stale-fill fence. Event sources use it
    /// (see [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer)).
    pub fn invalidator(&self) -> Invalidator {
        Invalidator::new(self.shared.clone())
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheService::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("cache_key", &self.shared.keys.cache_key())
            .finish()
    }
}
