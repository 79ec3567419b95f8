//! Counters of one stack: cache hits and misses, master reads, writes,
//! invalidations and live events.
//!
//! A [`CacheLayer`](crate::CacheLayer) owns one [`Stats`], shared (behind an
//! `Arc`) by every service it builds, its
//! [`Invalidator`](crate::Invalidator)s and the
//! [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer) fed by them.
//! Counting is one relaxed atomic add; reading is
//! [`Stats::snapshot`], which never blocks the counters.
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::{CacheLayer, NoCache};
//! let cache = CacheLayer::new(Arc::new(NoCache), "clients");
//! let stats = cache.stats();
//! // ... build a stack with `cache`, use it ...
//! let now = stats.snapshot();
//! assert_eq!(now.hits, 0);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated with relaxed atomic adds.
///
/// Each counter is exact; a [`snapshot`](Stats::snapshot) taken while
/// requests are running reads the counters one after another, so it may see
/// one counter of a request and not yet the next (a miss, not yet its master
/// read).
#[derive(Debug, Default)]
pub struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    master_reads: AtomicU64,
    writes_ok: AtomicU64,
    writes_failed: AtomicU64,
    invalidations: AtomicU64,
    row_invalidations: AtomicU64,
    events_received: AtomicU64,
    stale_hits: AtomicU64,
    refreshes: AtomicU64,
    failed_refreshes: AtomicU64,
}

/// The counters of a [`Stats`] at one moment. See each field for what is
/// counted, and where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Reads answered from the cache (`outcome="hit"`).
    pub hits: u64,
    /// Cacheable reads the cache could not answer (`outcome="miss"`): the
    /// slot was empty, had the wrong shape, or the lookup failed. Each miss
    /// then either starts a master read or joins one in flight.
    pub misses: u64,
    /// Misses that joined a master read already in flight for the same slot
    /// instead of starting their own (`outcome="coalesced"`, single flight).
    pub coalesced: u64,
    /// Reads the cache layer sent on to the master: one per single-flight
    /// read, plus every read the cache does not serve (views with an opaque
    /// handle, `GetSome`, and reads while a failed invalidation makes the
    /// cache bypassed).
    pub master_reads: u64,
    /// Writes the inner service answered with `Ok`.
    pub writes_ok: u64,
    /// Writes the inner service answered with `Err`, and writes that ended
    /// without an answer (a panic, a dropped future).
    pub writes_failed: u64,
    /// Successful invalidations of the whole cache_key: after a write, on a
    /// live event, when the event task (re)subscribes, and the retry that
    /// ends a bypass (`outcome="invalidated"`).
    pub invalidations: u64,
    /// Successful invalidations that named one row, with row-level
    /// invalidation on, over a backend that drops rows (after a write or on
    /// a live event): each dropped the slots that row can change, or the
    /// whole cache_key where the backend's index could not tell which (see
    /// [`RowChange`](crate::RowChange)). Not counted in `invalidations`; a
    /// backend that cannot drop rows at all (`RedisCache`) counts its whole
    /// drops there.
    pub row_invalidations: u64,
    /// Live events taken from the stream by the event task (counted as they
    /// arrive, before their invalidation).
    pub events_received: u64,
    /// Hits served stale (past the max age, or covered by a stale mark,
    /// within the stale-while-revalidate window); each is counted in `hits`
    /// too. See [`Freshness`](crate::Freshness).
    pub stale_hits: u64,
    /// Background refreshes started by stale hits (one per slot at a time:
    /// a stale hit while a read of the slot is in flight starts none). Each
    /// refresh's master read is counted in `master_reads`.
    pub refreshes: u64,
    /// Background refreshes whose master read failed: the stale slot keeps
    /// serving within its window (`warn!`).
    pub failed_refreshes: u64,
}

impl Stats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            hits: get(&self.hits),
            misses: get(&self.misses),
            coalesced: get(&self.coalesced),
            master_reads: get(&self.master_reads),
            writes_ok: get(&self.writes_ok),
            writes_failed: get(&self.writes_failed),
            invalidations: get(&self.invalidations),
            row_invalidations: get(&self.row_invalidations),
            events_received: get(&self.events_received),
            stale_hits: get(&self.stale_hits),
            refreshes: get(&self.refreshes),
            failed_refreshes: get(&self.failed_refreshes),
        }
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn coalesced(&self) {
        self.coalesced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn master_read(&self) {
        self.master_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn write_ok(&self) {
        self.writes_ok.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn write_failed(&self) {
        self.writes_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn invalidated(&self) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rows_invalidated(&self) {
        self.row_invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale_hit(&self) {
        self.stale_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refresh_started(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refresh_failed(&self) {
        self.failed_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn event_received(&self) {
        self.events_received.fetch_add(1, Ordering::Relaxed);
    }
}
