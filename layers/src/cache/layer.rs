use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::backend::Cache;
use super::freshness::{Clock, Freshness};
use super::invalidator::Invalidator;
use super::service::CacheService;
use super::shared::Shared;
use super::slot::SlotKeys;
use crate::stats::Stats;

/// Puts a [`Cache`] in front of a service, under one cache_key.
///
/// Every service this layer builds shares the layer's counters. The
/// invalidation state and single flight live in the backend
/// ([`Generations`](super::Generations)), so every layer over the same
/// backend instance (any clone of it, through any `Arc`) and cache_key sees
/// the others' invalidations and joins their reads.
///
/// What it guarantees, in short (the [module docs](super) say it in full):
///
/// - **Writes invalidate before they answer**; a failed write leaves the
///   cache as it was.
/// - **No stale fill**: a read that missed and is still fetching when any
///   sharer's invalidation starts does not store its rows, and reads issued
///   after an invalidation answer with rows fetched after it.
/// - **Single flight**: concurrent misses of one slot make one inner read;
///   its result, or its error (never cached), reaches every waiter; a waiter
///   that gives up does not cancel it.
/// - **Inner outages**: warm slots keep serving; cold reads fail with the
///   inner error as soon as it comes.
/// - **Freshness** (off by default): a max age and a stale-while-revalidate
///   window, see [`Freshness`].
/// - **Cache faults cost speed, never correctness**: failing or junk lookups
///   are misses, failing fills are skipped, and a failed invalidation makes
///   every sharer bypass the backend until an invalidation started after it
///   succeeds.
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

    /// Treat slots older than `max_age` as misses (or, with
    /// [`with_stale_while_revalidate`](CacheLayer::with_stale_while_revalidate),
    /// as stale). Age is counted from when the read that filled the slot
    /// started ([`CachedSlot::fetched_at`](super::CachedSlot::fetched_at)),
    /// so it holds across restarts with a persistent backend. See
    /// [`Freshness`](super::Freshness).
    ///
    /// A setting: call it before building services. The layer it returns
    /// shares this one's backend state and counters; services built
    /// earlier keep the policy they were built with.
    pub fn with_max_age(self, max_age: Duration) -> Self {
        let freshness = self.shared.freshness.clone().with_max_age(max_age);
        self.with_freshness(freshness)
    }

    /// Serve slots up to `window` past their max age (and slots covered by
    /// a stale mark, which the event layer sets when it (re)subscribes) at
    /// once, and refresh each in the background: one master read per slot
    /// at a time (single flight with ordinary misses), fenced like any fill
    /// (a refresh that overlaps a write or an event stores nothing). A
    /// refresh that fails leaves the stale slot serving within its window
    /// (`warn!`). [`Stats`] counts stale hits and refreshes.
    pub fn with_stale_while_revalidate(self, window: Duration) -> Self {
        let freshness = self
            .shared
            .freshness
            .clone()
            .with_stale_while_revalidate(window);
        self.with_freshness(freshness)
    }

    /// Age and stamp slots by `clock` instead of the system's wall clock
    /// (tests move a [`ManualClock`](super::ManualClock) by hand).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        let freshness = self.shared.freshness.clone().with_clock(clock);
        self.with_freshness(freshness)
    }

    /// Use `freshness` (max age, window and clock together).
    pub fn with_freshness(self, freshness: Freshness) -> Self {
        Self {
            shared: Arc::new(self.shared.with_freshness(freshness)),
        }
    }

    /// Drop only the slots a change to one row can make wrong, instead of
    /// the whole cache_key, after a write or a live event that names the
    /// row (`patch`, `insert`, `replace`, `delete`, `insert_return_id`;
    /// `Updated`, `Inserted`, `Deleted`). [`RowChange`](super::RowChange)
    /// lists which slots survive which change, and why.
    ///
    /// What it assumes, and the cache cannot check; turn it on only where
    /// all of it holds:
    ///
    /// - **a patch moves no row**: the master's order does not depend on
    ///   the fields a patch changes (vantage-redb's key order; a SQL table
    ///   ordered by its id; not PostgreSQL without an order, which may move
    ///   an updated row), and conditions baked into the master (not into
    ///   the view) cannot gain or lose the row;
    /// - **a write changes only the row it names**: no cascades, triggers
    ///   or unique-key conflicts that change other rows of the table, no
    ///   change of a row's id; and ids are spelled the same in writes,
    ///   events and the rows the master lists (an `insert` whose id the
    ///   master replaces: use `insert_return_id`);
    /// - **every change reaches the cache**: through a stack sharing the
    ///   backend and cache_key, or as a live event. Without row
    ///   invalidation, your next write flushes slots that miss a change the
    ///   cache never heard of; with it, slots that do not hold the written
    ///   row stay (a max age bounds how long).
    ///
    /// Falls back to dropping the whole cache_key for `delete_all`, a bare
    /// `Changed` event, a write that overlapped another write through any
    /// stack sharing the backend and cache_key, and whenever the backend
    /// cannot vouch for what its slots hold: a backend shared by processes
    /// (`RedisCache`, `TieredCache`), slots an earlier process left in a
    /// `RedbCache` file, raw [`Cache::put`](super::Cache::put)s, slots
    /// filled before any layer turned it on, and slots a (re)subscribe
    /// marked stale (until the next whole drop, in each case). Where those
    /// assumptions hold, every guarantee of the layer holds as it does
    /// without row invalidation: the model test checks it.
    ///
    /// A setting: call it before building services; the layer it returns
    /// shares this one's backend state and counters.
    pub fn with_row_invalidation(self) -> Self {
        Self {
            shared: Arc::new(self.shared.with_row_invalidation()),
        }
    }

    /// Whether writes and events that name a row drop only what it can
    /// change (see [`CacheLayer::with_row_invalidation`]).
    pub fn row_invalidation(&self) -> bool {
        self.shared.row_invalidation
    }

    /// The freshness policy (the default keeps slots until invalidated).
    pub fn freshness(&self) -> &Freshness {
        &self.shared.freshness
    }

    /// The slot keys of this layer's cache_key.
    pub fn slot_keys(&self) -> &SlotKeys {
        &self.shared.keys
    }

    /// The cache_key this layer caches under.
    pub fn cache_key(&self) -> &str {
        self.shared.keys.cache_key()
    }

    /// The cache backend, as given.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.shared.cache
    }

    /// The counters shared by every service this layer builds, its
    /// invalidators and the event layers fed by them: hits, misses, master
    /// reads, writes, invalidations, events. Take a
    /// [`snapshot`](Stats::snapshot) to read them.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    /// A handle that drops this layer's cache_key the way a successful write
    /// does, through the same invalidation state. Event sources use it (see
    /// [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer)).
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
