//! [`MemCache`]: an in-memory cache on moka.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use moka::notification::RemovalCause;
pub use moka::policy::EvictionPolicy;
use vantage_core::{error, Result};
use vantage_live_layers::cache::{split_key, Generations, Namespace, Peek, Ticket};
use vantage_live_layers::{Cache, CachedRows, CachedSlot, RowChange, SlotKind};

use super::slot_store::{weigh, SlotEntry, SlotId, SlotStore, Slots};

/// The default capacity of a [`MemCache`]: 64 MiB of (estimated) row weight.
pub const DEFAULT_MAX_WEIGHT: u64 = 64 * 1024 * 1024;

/// An in-memory [`Cache`] on moka, bounded by the estimated weight of the
/// rows it holds.
///
/// - **Bounded.** Slots are weighed by an estimate of the memory their rows
///   take; past [`MemCacheBuilder::max_weight`] the least recently used slots
///   are evicted. An optional [`MemCacheBuilder::time_to_live`] expires slots
///   by age.
/// - **Shared, never copied.** A hit hands out the stored rows behind an
///   `Arc`: answering costs the same for one row or a thousand.
/// - **O(1) invalidation.** Dropping a cache_key moves its namespace's epoch
///   (see [`Generations`]): its old slots become unreachable at once,
///   whatever the number of slots of it or of other cache_keys, and eviction
///   reclaims them (least recently used, so they go first).
/// - **Fenced fills.** A fill stores only if no invalidation of its
///   cache_key started since its read missed, checked under moka's lock for
///   the slot, so a slow read never puts back rows older than a write.
/// - **Shared state.** Clones share one store and one invalidation state;
///   give several `LiveTable`s one `MemCache` (or clones of it, through any
///   number of `Arc`s) and they share capacity, see each other's
///   invalidations, and share single flight.
///
/// A prefix that reaches into a namespace (`<namespace>/<part of a slot>`)
/// drops the whole namespace: a cache may always drop more than asked.
#[derive(Clone)]
pub struct MemCache {
    inner: Arc<Inner>,
}

struct Inner {
    store: SlotStore,
    generations: Generations,
}

/// moka's builder for the slots of a [`MemCache`], as
/// [`MemCacheBuilder::moka`] hands it over.
pub type MokaBuilder =
    moka::sync::CacheBuilder<SlotId, Arc<SlotEntry>, moka::sync::Cache<SlotId, Arc<SlotEntry>>>;

/// A slot leaving a [`MemCache`], as an eviction listener sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Eviction<'a> {
    /// The slot's key (`<escaped cache_key>/<slot>`, see
    /// [`SlotKeys`](vantage_live_layers::SlotKeys)).
    pub key: &'a str,
    /// Why it left: `Size` (evicted to stay under the weight cap), `Expired`
    /// (time to live or idle), `Replaced` (a fill stored a newer one),
    /// `Explicit` (dropped by a row-level invalidation). A slot dropped with
    /// its whole cache_key is not reported then: it becomes unreachable at
    /// once and leaves later, evicted for `Size`.
    pub cause: RemovalCause,
}

type Listener = Arc<dyn Fn(Eviction<'_>) + Send + Sync>;
type Tune = Arc<dyn Fn(MokaBuilder) -> MokaBuilder + Send + Sync>;

/// Builds a [`MemCache`] from moka's settings; every setting has a default.
///
/// The library keeps three things to itself: the key type, the weigher (an
/// estimate of the heap the rows take, so [`max_weight`](Self::max_weight) is
/// in bytes) and the invalidation fencing. Everything else is moka's, by
/// name, or through [`MemCacheBuilder::moka`].
///
/// ```
/// use std::time::Duration;
/// use vantage_live::MemCache;
///
/// let cache = MemCache::builder()
///     .max_weight(16 * 1024 * 1024)
///     .time_to_idle(Duration::from_secs(300))
///     .initial_capacity(1_000)
///     .eviction_listener(|evicted| eprintln!("{} left: {:?}", evicted.key, evicted.cause))
///     .build();
/// # let _ = cache;
/// ```
#[derive(Clone)]
pub struct MemCacheBuilder {
    max_weight: u64,
    time_to_live: Option<Duration>,
    time_to_idle: Option<Duration>,
    initial_capacity: Option<usize>,
    policy: EvictionPolicy,
    listener: Option<Listener>,
    tune: Option<Tune>,
}

impl Default for MemCacheBuilder {
    fn default() -> Self {
        Self {
            max_weight: DEFAULT_MAX_WEIGHT,
            time_to_live: None,
            time_to_idle: None,
            initial_capacity: None,
            policy: EvictionPolicy::lru(),
            listener: None,
            tune: None,
        }
    }
}

impl fmt::Debug for MemCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemCacheBuilder")
            .field("max_weight", &self.max_weight)
            .field("time_to_live", &self.time_to_live)
            .field("time_to_idle", &self.time_to_idle)
            .field("initial_capacity", &self.initial_capacity)
            .field("eviction_policy", &self.policy)
            .field("eviction_listener", &self.listener.is_some())
            .field("moka", &self.tune.is_some())
            .finish()
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

    /// Expire every slot `tti` after it was last read or stored (default:
    /// never).
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.time_to_idle = Some(tti);
        self
    }

    /// Make room for `slots` slots up front.
    pub fn initial_capacity(mut self, slots: usize) -> Self {
        self.initial_capacity = Some(slots);
        self
    }

    /// Which slots go first when the cache is full (default: least recently
    /// used; moka's TinyLFU keeps frequently read slots instead).
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Call `listener` for every slot that leaves the cache (see
    /// [`Eviction`] for the causes). It runs on whichever thread moka does
    /// its housekeeping on (a reader's or a writer's): keep it short and
    /// never block in it.
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(Eviction<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Any other moka setting: `tune` gets moka's builder after the settings
    /// above and returns it. The weigher is set after it (the library's), so
    /// a weigher set here has no effect; `max_capacity` set here replaces
    /// [`max_weight`](Self::max_weight) (in bytes).
    pub fn moka(
        mut self,
        tune: impl Fn(MokaBuilder) -> MokaBuilder + Send + Sync + 'static,
    ) -> Self {
        self.tune = Some(Arc::new(tune));
        self
    }

    /// Build the cache.
    pub fn build(self) -> MemCache {
        MemCache {
            inner: Arc::new(Inner {
                store: SlotStore::new(self.slots()),
                generations: Generations::new(),
            }),
        }
    }

    /// The moka cache these settings describe.
    pub(crate) fn slots(&self) -> Slots {
        let mut builder: MokaBuilder = moka::sync::Cache::builder()
            .max_capacity(self.max_weight)
            .eviction_policy(self.policy.clone());
        if let Some(ttl) = self.time_to_live {
            builder = builder.time_to_live(ttl);
        }
        if let Some(tti) = self.time_to_idle {
            builder = builder.time_to_idle(tti);
        }
        if let Some(slots) = self.initial_capacity {
            builder = builder.initial_capacity(slots);
        }
        if let Some(listener) = self.listener.clone() {
            builder = builder.eviction_listener(move |_, entry: Arc<SlotEntry>, cause| {
                listener(Eviction {
                    key: entry.key(),
                    cause,
                })
            });
        }
        if let Some(tune) = &self.tune {
            builder = tune(builder);
        }
        builder
            .weigher(|_: &SlotId, entry: &Arc<SlotEntry>| {
                u32::try_from(weigh(entry)).unwrap_or(u32::MAX)
            })
            .build_with_hasher(foldhash::fast::RandomState::default())
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

    /// A builder for moka's settings: capacity, time to live and to idle,
    /// eviction policy and listener, and the rest through
    /// [`MemCacheBuilder::moka`].
    pub fn builder() -> MemCacheBuilder {
        MemCacheBuilder::default()
    }

    /// The estimated weight of the slots held, in bytes (including slots
    /// already invalidated but not yet evicted). moka updates it lazily; see
    /// [`MemCache::run_pending_tasks`].
    pub fn weighted_size(&self) -> u64 {
        self.inner.store.slots().weighted_size()
    }

    /// The number of slots held (including invalidated, not yet evicted ones).
    pub fn entry_count(&self) -> u64 {
        self.inner.store.slots().entry_count()
    }

    /// Run moka's pending maintenance (evictions, expirations) now.
    pub async fn run_pending_tasks(&self) {
        self.inner.store.slots().run_pending_tasks();
    }

    /// The slot under `key`, typed, if stored.
    fn find(&self, key: &str) -> Option<CachedSlot> {
        let (namespace, slot) = split_key(key);
        let namespace = self.inner.generations.get(namespace)?;
        self.inner.store.get(&namespace, slot)
    }
}

impl fmt::Debug for MemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemCache")
            .field("entries", &self.entry_count())
            .field("weighted_size", &self.weighted_size())
            .finish()
    }
}

/// `rows` typed as a slot of `key`'s kind, or an error naming the key.
pub(crate) fn typed(key: &str, rows: CachedRows) -> Result<CachedSlot> {
    let kind = SlotKind::of_key(key);
    CachedSlot::from_rows(kind, rows).ok_or_else(|| {
        error!(
            "rows do not have the shape of the slot they are put under",
            key = key,
            kind = format!("{kind:?}")
        )
    })
}

#[async_trait]
impl Cache for MemCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        Ok(self.find(key).and_then(|slot| slot.to_rows(key)))
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        let slot = typed(key, rows)?;
        let (namespace, within) = split_key(key);
        let namespace = self.inner.generations.namespace(namespace);
        // Stored behind the row index's back: row-level drops fall back to
        // whole ones until a whole drop.
        namespace.stored_unrecorded();
        self.inner.store.put(&namespace, within, slot);
        Ok(())
    }

    /// Moves the generation and the epoch of every namespace under `prefix`:
    /// nothing else to do, and nothing that can fail.
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        self.inner
            .generations
            .start_drop(prefix, false)
            .finish::<(), ()>(&Ok(()));
        Ok(())
    }

    /// Removes exactly the slots the change can make wrong, each under
    /// moka's lock for its key (as fills run); the whole namespace if the
    /// row index cannot tell.
    async fn invalidate_rows(&self, namespace: &Arc<Namespace>, change: &RowChange) -> Result<()> {
        let Some(drop) = namespace.start_row_drop(change) else {
            return self.invalidate_prefix(&namespace.whole_prefix()).await;
        };
        for slot in drop.slots() {
            self.inner.store.remove(namespace, slot);
        }
        drop.finish::<(), ()>(&Ok(()));
        Ok(())
    }

    fn drops_rows(&self) -> bool {
        true
    }

    fn generations(&self) -> Option<&Generations> {
        Some(&self.inner.generations)
    }

    fn peek(&self, key: &str, namespace: &Arc<Namespace>) -> Peek {
        match self.inner.store.get(namespace, split_key(key).1) {
            Some(slot) => Peek::Hit(slot),
            None => Peek::Miss,
        }
    }

    async fn lookup(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        let _ = ticket;
        Ok(self.inner.store.get(namespace, split_key(key).1))
    }

    async fn fill(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: Ticket,
        slot: CachedSlot,
    ) -> Result<bool> {
        Ok(self
            .inner
            .store
            .fill(namespace, ticket, split_key(key).1, slot))
    }
}
