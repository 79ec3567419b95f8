//! [`TieredCache`]: a memory tier in each process in front of a shared
//! [`RedisCache`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use vantage_core::Result;
use vantage_live_layers::cache::{split_key, Generations, Namespace, Peek, Ticket};
use vantage_live_layers::{Cache, CachedRows, CachedSlot};

use super::mem::{typed, MemCacheBuilder, DEFAULT_MAX_WEIGHT};
use super::redis::RedisCache;
use super::slot_store::SlotStore;

/// The default longest life of a slot in tier 1: 30 s. It bounds how long a
/// process can serve a slot another process's write made stale when the
/// invalidation fan-out is down.
pub const DEFAULT_FRONT_TTL: Duration = Duration::from_secs(30);

/// Two tiers: decoded slots in this process's memory (tier 1, moka, as in
/// [`MemCache`](super::MemCache)) in front of a [`RedisCache`] shared by
/// every process (tier 2).
///
/// A hit in tier 1 costs what a `MemCache` hit costs (no round trip, no
/// decode). A tier-1 miss looks in Redis (one round trip) and keeps what it
/// found in tier 1; a miss in both reads the master and fills both.
///
/// # Guarantees
///
/// - **Within a process**, as for every backend: a read that starts after a
///   write (or invalidation) through any `LiveTable` sharing this cache (or a
///   clone, or its `RedisCache`) was acknowledged answers with rows read
///   after it. Tier 1 is fenced by the `RedisCache`'s in-process
///   [`Generations`] exactly like [`RedbCache`](super::RedbCache)'s memory
///   front: a copy from Redis into tier 1 uses the ticket taken before the
///   Redis read, and every invalidation moves the generation when it starts
///   and again when it ends, so a copy that overlapped one never survives it.
/// - **Across processes**: Redis itself is fenced across processes (see
///   [`RedisCache`]), but another process's tier 1 only learns of a write
///   through the invalidation fan-out: each writer publishes its
///   invalidations (a [`Publisher`](vantage_live_layers::publish::Publisher),
///   e.g. `NatsPublisher`, with `LiveTable::with_publisher`), and each
///   process feeds the bus back in as a live stream (e.g. `NatsLiveStream`,
///   with `LiveTable::with_live_stream`), which drops the cache_key here. A
///   read that starts later than a write's acknowledgement **plus the
///   fan-out delay** (the time for the bus to deliver the invalidation and
///   this process to handle it) sees the write. When the bus connection is
///   lost, the live stream drops the cache_key when it is back (messages
///   sent meanwhile are gone). Whatever happens to the bus, a tier-1 slot
///   lives at most [`front_time_to_live`](TieredCacheBuilder::front_time_to_live)
///   (default [`DEFAULT_FRONT_TTL`], 30 s): the hard bound on staleness with
///   no fan-out at all.
/// - **Faults** of Redis cost speed, never correctness, as for
///   [`RedisCache`]; tier 1 keeps serving what it holds (within the bounds
///   above).
///
/// Clones share both tiers.
#[derive(Clone)]
pub struct TieredCache {
    back: RedisCache,
    front: SlotStore,
    /// The latest Redis generation seen per namespace (by [`Namespace::id`]):
    /// the token of a lookup answered from tier 1 (see `lookup`).
    seen: Arc<Mutex<HashMap<u64, u64>>>,
}

/// Builds a [`TieredCache`].
#[derive(Clone, Debug)]
pub struct TieredCacheBuilder {
    back: RedisCache,
    front_max_weight: u64,
    front_ttl: Duration,
}

impl TieredCacheBuilder {
    /// Keep up to `bytes` of estimated row weight in tier 1 (default
    /// [`DEFAULT_MAX_WEIGHT`], 64 MiB).
    pub fn front_max_weight(mut self, bytes: u64) -> Self {
        self.front_max_weight = bytes;
        self
    }

    /// Drop a tier-1 slot `ttl` after it was stored (default
    /// [`DEFAULT_FRONT_TTL`], 30 s): the longest a process serves a slot
    /// made stale elsewhere if the fan-out fails.
    pub fn front_time_to_live(mut self, ttl: Duration) -> Self {
        self.front_ttl = ttl;
        self
    }

    /// Build the cache.
    pub fn build(self) -> TieredCache {
        let slots = MemCacheBuilder::default()
            .max_weight(self.front_max_weight)
            .time_to_live(self.front_ttl)
            .slots();
        TieredCache {
            back: self.back,
            front: SlotStore::new(slots),
            seen: Arc::default(),
        }
    }
}

impl TieredCache {
    /// `back` with a tier 1 of the default size and time to live.
    pub fn new(back: RedisCache) -> Self {
        Self::builder(back).build()
    }

    /// A builder to size tier 1.
    pub fn builder(back: RedisCache) -> TieredCacheBuilder {
        TieredCacheBuilder {
            back,
            front_max_weight: DEFAULT_MAX_WEIGHT,
            front_ttl: DEFAULT_FRONT_TTL,
        }
    }

    /// Tier 2.
    pub fn back(&self) -> &RedisCache {
        &self.back
    }

    fn saw(&self, namespace: &Namespace, token: Option<u64>) {
        if let Some(generation) = token {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.insert(namespace.id(), generation);
        }
    }

    fn last_seen(&self, namespace: &Namespace) -> Option<u64> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&namespace.id()).copied()
    }

    fn namespace(&self, key: &str) -> Arc<Namespace> {
        self.back.generations_ref().namespace(split_key(key).0)
    }
}

impl fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("back", &self.back)
            .field("front_entries", &self.front.slots().entry_count())
            .finish()
    }
}

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        let namespace = self.namespace(key);
        if let Some(slot) = self.front.get(&namespace, split_key(key).1) {
            return Ok(slot.to_rows(key));
        }
        self.back.get(key).await
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        let slot = typed(key, rows.clone())?;
        self.back.put(key, rows).await?;
        let namespace = self.namespace(key);
        self.front.put(&namespace, split_key(key).1, slot);
        Ok(())
    }

    /// Tier 2's invalidation, which moves the shared in-process generations
    /// (and epochs: tier 1's slots of the prefix become unreachable) before
    /// it touches Redis, and again when it ends.
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        self.back.invalidate_prefix(prefix).await
    }

    /// Tier 2's, as for [`invalidate_prefix`](Cache::invalidate_prefix).
    async fn invalidate_cache_keys_starting_with(&self, cache_key_prefix: &str) -> Result<()> {
        self.back
            .invalidate_cache_keys_starting_with(cache_key_prefix)
            .await
    }

    /// Tier 2's: the generation in Redis.
    async fn shared_generation(&self, namespace: &Arc<Namespace>) -> Result<Option<u64>> {
        self.back.shared_generation(namespace).await
    }

    fn generations(&self) -> Option<&Generations> {
        Some(self.back.generations_ref())
    }

    fn peek(&self, key: &str, namespace: &Arc<Namespace>) -> Peek {
        match self.front.get(namespace, split_key(key).1) {
            Some(slot) => Peek::Hit(slot),
            None => Peek::Unknown,
        }
    }

    /// Tier 1, else one trip to Redis; a slot found there is copied into
    /// tier 1 under the ticket taken before the trip (refused if an
    /// invalidation started or ended since).
    ///
    /// A tier-1 hit records, as the ticket's token, the latest Redis
    /// generation this process saw for the namespace: a fill with it lands
    /// only if Redis has not moved since, which is as safe as a token seen
    /// just now. (The cache layer never fills after a hit; this keeps "a
    /// fill replaces" true for callers that do.)
    async fn lookup(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        let before = *ticket;
        let within = split_key(key).1;
        if let Some(slot) = self.front.get(namespace, within) {
            if let Some(generation) = self.last_seen(namespace) {
                ticket.set_token(generation);
            }
            return Ok(Some(slot));
        }
        let found = self.back.lookup(key, namespace, ticket).await?;
        self.saw(namespace, ticket.token());
        if let Some(slot) = &found {
            self.front.fill(namespace, before, within, slot.clone());
        }
        Ok(found)
    }

    /// Into Redis (fenced there), then, if stored, into tier 1 (fenced by the
    /// in-process generation).
    async fn fill(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: Ticket,
        slot: CachedSlot,
    ) -> Result<bool> {
        let stored = self.back.fill(key, namespace, ticket, slot.clone()).await?;
        if stored {
            self.saw(namespace, ticket.token());
            self.front.fill(namespace, ticket, split_key(key).1, slot);
        }
        Ok(stored)
    }
}
