//! [`MemCache`]: an in-memory cache on moka.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use moka::policy::EvictionPolicy;
use vantage_core::Result;
use vantage_live_layers::cache::split_key;
use vantage_live_layers::{Cache, CachedRows, Value};
use vantage_types::Record as Fields;

/// The default capacity of a [`MemCache`]: 64 MiB of (estimated) row weight.
pub const DEFAULT_MAX_WEIGHT: u64 = 64 * 1024 * 1024;

/// An in-memory [`Cache`] on moka, bounded by the estimated weight of the
/// rows it holds.
///
/// - **Bounded.** Slots are weighed by an estimate of the memory their rows
///   take; past [`MemCacheBuilder::max_weight`] the least recently used slots
///   are evicted. An optional [`MemCacheBuilder::time_to_live`] expires slots
///   by age.
/// - **O(1) invalidation.** Each cache_key (namespace) has a generation, and
///   slots are stored under it. Invalidating a cache_key moves it to a fresh
///   generation: its old slots become unreachable at once, whatever the
///   number of slots of it or of other cache_keys, and eviction reclaims
///   them (least recently used, so they go first).
/// - **Fenced fills.** [`Cache::put_if_generation`] stores under the
///   generation it was given, so a fill that raced an invalidation lands in
///   the old, unreachable generation.
/// - **Shared.** Clones share one store; give several `LiveTable`s one
///   `MemCache` and they share capacity and see each other's invalidations.
///
/// A prefix that reaches into a namespace (`<namespace>/<part of a slot>`)
/// drops the whole namespace: a cache may always drop more than asked.
#[derive(Clone)]
pub struct MemCache {
    inner: Arc<Inner>,
}

struct Inner {
    slots: moka::future::Cache<SlotId, Arc<CachedRows>>,
    /// Namespace → its current generation. Generations are drawn from
    /// `next_generation`, so no two namespaces (or two lives of one) share one.
    namespaces: RwLock<HashMap<Box<str>, u64>>,
    next_generation: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SlotId {
    generation: u64,
    slot: Box<str>,
}

/// Builds a [`MemCache`]; every setting has a default.
#[derive(Clone, Debug)]
pub struct MemCacheBuilder {
    max_weight: u64,
    time_to_live: Option<Duration>,
}

impl Default for MemCacheBuilder {
    fn default() -> Self {
        Self {
            max_weight: DEFAULT_MAX_WEIGHT,
            time_to_live: None,
        }
    }
}

impl MemCacheBuilder {
    /// Keep at most `bytes` of estimated row weight (default
    /// [`DEFAULT_MAX_WEIGHT`], 64 MiB). A slot heavier than this is not kept.
    pub fn max_weight(mut self, bytes: u64) -> Self {
        self.max_weight = bytes;
        self
    }

    /// Expire every slot `ttl` after it was stored (default: never).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.time_to_live = Some(ttl);
        self
    }

    /// Build the cache.
    pub fn build(self) -> MemCache {
        let mut builder = moka::future::Cache::builder()
            .max_capacity(self.max_weight)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|id: &SlotId, rows: &Arc<CachedRows>| {
                u32::try_from(weigh(&id.slot, rows)).unwrap_or(u32::MAX)
            });
        if let Some(ttl) = self.time_to_live {
            builder = builder.time_to_live(ttl);
        }
        MemCache {
            inner: Arc::new(Inner {
                slots: builder.build(),
                namespaces: RwLock::new(HashMap::new()),
                next_generation: AtomicU64::new(1),
            }),
        }
    }
}

impl Default for MemCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MemCache {
    /// A cache with the default settings (64 MiB, no time to live).
    pub fn new() -> Self {
        MemCacheBuilder::default().build()
    }

    /// A builder to choose capacity and time to live.
    pub fn builder() -> MemCacheBuilder {
        MemCacheBuilder::default()
    }

    /// The estimated weight of the slots held, in bytes (including slots
    /// already invalidated but not yet evicted). moka updates it lazily; see
    /// [`MemCache::run_pending_tasks`].
    pub fn weighted_size(&self) -> u64 {
        self.inner.slots.weighted_size()
    }

    /// The number of slots held (including invalidated, not yet evicted ones).
    pub fn entry_count(&self) -> u64 {
        self.inner.slots.entry_count()
    }

    /// Run moka's pending maintenance (evictions, expirations) now.
    pub async fn run_pending_tasks(&self) {
        self.inner.slots.run_pending_tasks().await;
    }

    fn current_generation(&self, namespace: &str) -> Option<u64> {
        let map = self
            .inner
            .namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner());
        map.get(namespace).copied()
    }

    fn generation_of(&self, namespace: &str) -> u64 {
        if let Some(g) = self.current_generation(namespace) {
            return g;
        }
        let mut map = self
            .inner
            .namespaces
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(namespace.into())
            .or_insert_with(|| self.inner.next_generation.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Debug for MemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemCache")
            .field("entries", &self.inner.slots.entry_count())
            .field("weighted_size", &self.inner.slots.weighted_size())
            .finish()
    }
}

#[async_trait]
impl Cache for MemCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        let (namespace, slot) = split_key(key);
        let Some(generation) = self.current_generation(namespace) else {
            return Ok(None);
        };
        let id = SlotId {
            generation,
            slot: slot.into(),
        };
        Ok(self.inner.slots.get(&id).await.map(|rows| (*rows).clone()))
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        let (namespace, slot) = split_key(key);
        let generation = self.generation_of(namespace);
        let id = SlotId {
            generation,
            slot: slot.into(),
        };
        self.inner.slots.insert(id, Arc::new(rows)).await;
        Ok(())
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let mut map = self
            .inner
            .namespaces
            .write()
            .unwrap_or_else(|e| e.into_inner());
        match prefix.split_once('/') {
            // Within (or exactly) one namespace: drop that namespace.
            Some((namespace, _)) => {
                map.remove(namespace);
            }
            // Every namespace that starts with the prefix.
            None => map.retain(|namespace, _| !namespace.starts_with(prefix)),
        }
        Ok(())
    }

    async fn generation(&self, key: &str) -> Result<u64> {
        Ok(self.generation_of(split_key(key).0))
    }

    async fn put_if_generation(
        &self,
        key: &str,
        rows: CachedRows,
        generation: u64,
    ) -> Result<bool> {
        let (namespace, slot) = split_key(key);
        if self.current_generation(namespace) != Some(generation) {
            return Ok(false);
        }
        // Stored under `generation`: if an invalidation slips in after the
        // check, the slot lands in the dropped generation and is never read.
        let id = SlotId {
            generation,
            slot: slot.into(),
        };
        self.inner.slots.insert(id, Arc::new(rows)).await;
        Ok(true)
    }
}

/// An estimate of the memory a slot takes, in bytes: every heap block its
/// rows own, rounded the way the allocator rounds them, the spare capacity of
/// their maps, and the cache's own bookkeeping for the slot.
///
/// Counting only the text and the values (as a first version did) weighed
/// rows of four short fields at about half of what they really take, so a
/// cache capped at 64 MiB grew the process by about 125 MiB
/// (`examples/bench_report.rs` measures it).
fn weigh(slot: &str, rows: &CachedRows) -> u64 {
    // moka's entry (its map bucket, access-order node and entry info), the
    // `SlotId` key, the `Arc<CachedRows>` and `CachedRows` itself.
    const SLOT: u64 = 256;
    let mut total =
        SLOT + block(slot.len()) + map_bytes::<String, Fields<Value>>(rows.rows.capacity());
    for (id, record) in &rows.rows {
        total += block(id.capacity()) + map_bytes::<String, Value>(record.capacity());
        for (field, value) in record.iter() {
            total += block(field.capacity()) + value_heap(value);
        }
    }
    total
}

/// The heap of an `IndexMap<K, V>` with room for `capacity` entries: its
/// entries (hash, key and value each) and its index table.
fn map_bytes<K, V>(capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    #[allow(dead_code)]
    struct Bucket<K, V>(usize, K, V);
    // hashbrown's table for this capacity: a power of two of buckets, at most
    // 7/8 full (fewer than 8 buckets: all but one).
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    block(capacity * std::mem::size_of::<Bucket<K, V>>())
        + block(buckets * std::mem::size_of::<usize>() + buckets + 16)
}

/// What the allocator takes for a block of `n` bytes (none for 0): a header
/// word, rounded up to 16 bytes, at least 32 (glibc's malloc; others round
/// alike).
fn block(n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        ((n + 8).div_ceil(16) * 16).max(32) as u64
    }
}

/// The heap a value owns (its inline size is counted with the map entry
/// holding it).
fn value_heap(value: &Value) -> u64 {
    let size = std::mem::size_of::<Value>();
    match value {
        Value::Text(s) => block(s.capacity()),
        Value::Bytes(b) => block(b.capacity()),
        Value::Array(items) => {
            block(items.capacity() * size) + items.iter().map(value_heap).sum::<u64>()
        }
        Value::Map(pairs) => {
            block(pairs.capacity() * 2 * size)
                + pairs
                    .iter()
                    .map(|(k, v)| value_heap(k) + value_heap(v))
                    .sum::<u64>()
        }
        Value::Tag(_, inner) => block(size) + value_heap(inner),
        _ => 0,
    }
}
