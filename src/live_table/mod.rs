//! [`LiveTable`]: an `AnyTable` with a cache in front, as a tower stack.

mod default_stack;
mod table_like;
mod value_set;

use std::fmt;
use std::sync::{Arc, OnceLock};

use futures_util::TryFutureExt as _;
use tower::{BoxError, Service, ServiceExt};
use vantage_core::Result;
use vantage_live_layers::error::into_vantage_error;
use vantage_live_layers::{
    Cache, CacheLayer, NoCache, Request, Response, SlotKeys, Stats, StatsSnapshot, View,
};
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

use self::default_stack::Config;
pub use self::default_stack::{CachedMaster, CoreStack, LiveStack, MasterService};

/// Which page [`LiveTable::page_cache_key`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSelector {
    /// A pagination; `None` is the unpaginated list.
    Pagination(Option<Pagination>),
    /// A page number at the view's page size.
    Number(i64),
}

impl From<Option<Pagination>> for PageSelector {
    fn from(pagination: Option<Pagination>) -> Self {
        PageSelector::Pagination(pagination)
    }
}

impl From<Pagination> for PageSelector {
    fn from(pagination: Pagination) -> Self {
        PageSelector::Pagination(Some(pagination))
    }
}

impl From<i64> for PageSelector {
    fn from(page: i64) -> Self {
        PageSelector::Number(page)
    }
}

impl From<i32> for PageSelector {
    fn from(page: i32) -> Self {
        PageSelector::Number(page.into())
    }
}

impl From<u32> for PageSelector {
    fn from(page: u32) -> Self {
        PageSelector::Number(page.into())
    }
}

/// A table with a cache in front: reads come from the cache when they can and
/// fill it when they cannot, writes go to the master and drop the cache_key.
///
/// `LiveTable` implements the value-set traits (`ReadableValueSet`,
/// `WritableValueSet`, `InsertableValueSet`, and so `ActiveRecordSet`) and
/// `TableLike`, so `AnyTable::from_table_like(live)` puts it anywhere an
/// `AnyTable` goes; generic code cannot tell it from the master.
///
/// # What is cached
///
/// Each view has its own slot under the cache_key: every page at every page
/// size, the unpaginated list, each id, and the count. Equality conditions
/// (`add_condition_eq`) are forwarded to the master and, if it accepts them,
/// become part of the slot, so a conditioned view is cached apart. Opaque
/// conditions (`add_condition`, `temp_add_condition`) are forwarded too, but
/// the cache cannot see into them: the LiveTable then reads the master every
/// time (with a `warn!`). To cache a conditioned view, the usual way is to
/// condition the concrete table before wrapping it and give that view its own
/// cache_key:
///
/// ```ignore
/// let marty = clients_table.with_condition(clients_table.name().eq("Marty"));
/// let live = LiveTable::new(AnyTable::from_table(marty), "clients/name=Marty", cache);
/// ```
///
/// `get_some_value` always reads the master.
///
/// # Guarantees
///
/// A read answers with what the master held at some instant no earlier than
/// the last write acknowledged, or event processed, before the read started
/// (through this LiveTable or any LiveTable sharing its cache backend and
/// cache_key: the same backend instance, or any clone of it, behind any
/// number of `Arc`s). Changes made behind the LiveTables' backs show up once
/// an event for them has been processed ([`LiveTable::with_live_stream`]).
/// In detail:
///
/// - **Writes invalidate before they answer.** A write that succeeds drops
///   every slot of the cache_key before it returns; a read issued afterwards
///   never sees a pre-write slot. A write that fails leaves the cache as it
///   was.
/// - **No stale fill.** A read that missed and is still waiting on the master
///   when a write through any LiveTable sharing the cache and cache_key is
///   acknowledged, or when an event for the cache_key is processed, does not
///   install the rows it fetched: they may predate the change. (It still
///   returns them: it overlapped the change.) Reads issued after the
///   acknowledgement, or after the event was processed, return rows fetched
///   after it. This holds for `MemCache`, `RedbCache` and any backend that
///   owns its invalidation state; for a third-party [`Cache`] that implements
///   only the seed's methods, see [`vantage_live_layers::cache`].
/// - **Single flight.** Concurrent misses of one slot (one page at one page
///   size, one id, one count) through any LiveTables sharing the backend and
///   cache_key in this process make one master read, and every waiter gets
///   that result. An error reaches every waiter and is not cached. A waiter
///   that gives up (drops its future, times out) does not cancel the read
///   for the others.
/// - **Shared rows never change.** [`LiveTable::list_shared`] and
///   [`LiveTable::get_shared`] hand out the rows the cache holds; a later
///   fill stores new rows beside them, so what a holder has never changes.
/// - **Master outages.** Warm slots keep serving while the master fails; a
///   cold read returns the master's error as soon as the master returns it
///   (the LiveTable adds no retries and no timeouts).
/// - **Cache faults cost speed, never correctness.** A cache lookup that
///   fails or answers bytes that do not decode is a miss (with a `warn!`); a
///   failed fill still returns the master's rows (with a `warn!`). If dropping the
///   cache_key fails after a write or an event, the write still succeeds, and
///   every LiveTable sharing the cache and cache_key falls back to reading
///   the master without the cache (retrying the invalidation on each read,
///   with a `warn!`) until an invalidation started after the failure
///   succeeds: a stale slot is never served. See [`CacheLayer`] for the
///   details.
///
/// # Writes
///
/// Writes go through a bounded queue ([`WriteQueueLayer`](crate::WriteQueueLayer)) shared by every
/// clone of the LiveTable:
///
/// - **First in, first out, one at a time.** Writes reach the master (or the
///   [custom write target](LiveTable::with_custom_write_target)) in the order
///   they entered the queue, each after the previous one has finished. A
///   write enters the queue the first time its future is polled while there
///   is room; to fix the order of two writes, await the first before
///   starting the second.
/// - **Detached completion.** A write that entered the queue is applied, and
///   the cache invalidated, even if its caller drops the future (navigates
///   away, times out). A UI need not hold a form while a save travels:
///   `tokio::spawn` the call to fire and forget.
/// - **Each caller gets its own reply**, after the cache has been
///   invalidated.
/// - **Reads never wait behind writes.**
/// - **Failures.** A write the target rejects returns the target's error and
///   leaves the cache as it was; later writes go on. A write that panics
///   returns an error whose source is
///   [`WritePanicked`](crate::WritePanicked);
///   later writes go on. A full queue makes writers wait
///   ([`LiveTable::with_write_queue_bound`]). When the LiveTable and all its
///   clones are dropped, writes already accepted are still applied, then the
///   queue's worker ends.
///
/// The queue runs on tokio: its worker starts with the first write, on that
/// write's runtime (so constructing a LiveTable needs no runtime). If that
/// runtime shuts down, later writes fail with
/// [`QueueClosed`](crate::QueueClosed).
///
/// # Offline writes
///
/// [`LiveTable::with_outbox`] puts a durable outbox where the write queue
/// sits: a write answers once it is stored (synced) in a local redb file,
/// the outbox applies it to the master in the background, first in first
/// out, exactly once (replays after a crash are recognised), keeps what the
/// master rejects in a dead-letter list, and reads show the pending writes
/// laid over the master's rows. See
/// [`OutboxLayer`](vantage_live_layers::outbox::OutboxLayer) for every rule.
///
/// # Cloning
///
/// Clones share the stack (and so the write queue), the cache and the
/// master, and each has its own view: setting pagination or conditions on
/// one clone does not change another.
///
/// # Building
///
/// [`LiveTable::new`] and the `with_*` builders only hold settings: the
/// stack is assembled on first use, and its tasks (the write queue's worker,
/// the live-stream task) start with the first write or read. A `with_*`
/// builder returns a LiveTable with a stack of its own: configure a
/// LiveTable before using it.
///
/// # Your own stack
///
/// [`LiveTable::from_service`] puts a LiveTable (and so an `AnyTable`) over
/// any tower service that answers [`Request`]s with [`Response`]s: the
/// layers of this crate in another order, with tower's own middleware
/// between them, or your own. The master supplies the metadata (`TableLike`:
/// columns, id field, references); the stack answers the requests.
#[derive(Clone)]
pub struct LiveTable<S = LiveStack> {
    shared: Arc<Shared<S>>,
    pagination: Option<Pagination>,
    view: View,
    /// The master with this view's opaque conditions, if any were added.
    opaque: Option<Opaque>,
}

#[derive(Clone)]
struct Opaque {
    table: AnyTable,
    permanent: bool,
    temporary: usize,
}

/// What every clone of a LiveTable shares.
struct Shared<S> {
    master: AnyTable,
    /// The cache layer the stack caches through: its cache_key, slot keys,
    /// backend and counters.
    cache: CacheLayer,
    /// The settings of the default stack (`None` for a stack of your own).
    config: Option<Config>,
    /// The stack, assembled on first use.
    stack: OnceLock<S>,
    /// How to assemble it (`None` for a stack given ready-made).
    assemble: Option<fn(&Shared<S>) -> S>,
}

impl<S> Shared<S> {
    fn new(
        master: AnyTable,
        cache: CacheLayer,
        config: Option<Config>,
        stack: Option<S>,
        assemble: Option<fn(&Shared<S>) -> S>,
    ) -> Self {
        let cell = OnceLock::new();
        if let Some(stack) = stack {
            let _ = cell.set(stack);
        }
        Self {
            master,
            cache,
            config,
            stack: cell,
            assemble,
        }
    }

    /// The stack, assembled now if it was not yet.
    fn stack(&self) -> &S {
        self.stack.get_or_init(|| match self.assemble {
            Some(assemble) => assemble(self),
            None => unreachable!("a stack given ready-made is set at construction"),
        })
    }
}

impl<S> LiveTable<S>
where
    S: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    /// A LiveTable that runs its reads and writes through `stack`, any tower
    /// service answering [`Request`]s with [`Response`]s; `master` supplies
    /// the metadata (`TableLike`), the view's conditions and references.
    ///
    /// The stack's errors reach the caller as `VantageError`s
    /// ([`into_vantage_error`]): the master's own unchanged, a timeout as
    /// "a timeout layer gave up waiting: request timed out", and so on.
    ///
    /// Give it the [`CacheLayer`] the stack caches through with
    /// [`LiveTable::with_cache_layer`], so that [`LiveTable::stats`],
    /// [`LiveTable::cache_key`] and the slot-key helpers speak of it;
    /// without one they describe a `NoCache` under the master's table name.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use vantage_live::{CacheLayer, LiveTable, MemCache, TableService, WriteQueueLayer};
    /// # fn demo(master: vantage_table::any::AnyTable) {
    /// use tower::ServiceBuilder;
    /// let cache = CacheLayer::new(Arc::new(MemCache::new()), "products");
    /// let stack = ServiceBuilder::new()
    ///     .layer(WriteQueueLayer::new())
    ///     .layer(cache.clone())
    ///     .timeout(Duration::from_secs(2)) // tower's own, below the cache
    ///     .service(TableService::new(master.clone()));
    /// let live = LiveTable::from_service(master, stack).with_cache_layer(&cache);
    /// # let _ = live; }
    /// ```
    pub fn from_service(master: AnyTable, stack: S) -> Self {
        let cache = CacheLayer::new(Arc::new(NoCache), master.table_name().to_owned());
        let pagination = master.get_pagination().copied();
        Self {
            shared: Arc::new(Shared::new(master, cache, None, Some(stack), None)),
            pagination,
            view: View::new().with_pagination(pagination),
            opaque: None,
        }
    }

    /// Speak of `cache` (the cache layer this LiveTable's own stack caches
    /// through) in [`LiveTable::stats`], [`LiveTable::cache_key`],
    /// [`LiveTable::cache`] and the slot-key helpers. For a LiveTable over
    /// a stack of your own.
    pub fn with_cache_layer(mut self, cache: &CacheLayer) -> Self {
        let shared = Shared::new(
            self.shared.master.clone(),
            cache.clone(),
            self.shared.config.clone(),
            self.shared.stack.get().cloned(),
            self.shared.assemble,
        );
        self.shared = Arc::new(shared);
        self
    }

    /// The stack requests run through (assembled now if this LiveTable has
    /// not been used yet): for custom calls, and to measure it.
    pub fn stack(&self) -> &S {
        self.shared.stack()
    }

    /// Run one request through the stack.
    fn call(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Result<Response>> + Send + 'static {
        self.stack()
            .clone()
            .oneshot(request)
            .map_err(to_vantage_error::<S::Error>)
    }
}

/// The caller's error for an error of the stack.
fn to_vantage_error<E: Into<BoxError>>(error: E) -> vantage_core::VantageError {
    into_vantage_error(error.into())
}

impl<S> LiveTable<S> {
    /// What this LiveTable has done so far: a cheap snapshot of its
    /// counters (relaxed atomic loads), shared by all its clones.
    ///
    /// - `hits`, `misses`: reads answered from the cache, and cacheable reads
    ///   it could not answer;
    /// - `coalesced`: misses that joined a master read already in flight;
    /// - `master_reads`: reads sent to the master (one per single-flight
    ///   read, plus every uncached read: opaque conditions,
    ///   `get_some_value`, reads while the cache is bypassed);
    /// - `writes_ok`, `writes_failed`: writes by their result (a write that
    ///   panicked or never answered counts as failed);
    /// - `invalidations`: successful drops of the cache_key (after each
    ///   write, on each live event and each (re)subscription);
    /// - `row_invalidations`: with
    ///   [`with_row_invalidation`](LiveTable::with_row_invalidation), writes
    ///   and events that dropped only the slots their row can change;
    /// - `stale_hits`, `refreshes`, `failed_refreshes`: with
    ///   [`with_stale_while_revalidate`](LiveTable::with_stale_while_revalidate),
    ///   slots served stale, and their background refreshes;
    /// - `events_received`: live events taken from the stream.
    ///
    /// The `with_*` builders make a new stack, with counters of its own.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use vantage_live::{LiveTable, NoCache};
    /// # fn demo(master: vantage_table::any::AnyTable) {
    /// let live = LiveTable::new(master, "products", Arc::new(NoCache));
    /// let stats = live.stats();
    /// assert_eq!((stats.hits, stats.misses), (0, 0));
    /// # }
    /// ```
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.cache.stats().snapshot()
    }

    /// The counters themselves, shared (see [`LiveTable::stats`]).
    pub fn stats_handle(&self) -> Arc<Stats> {
        self.shared.cache.stats()
    }

    /// The cache_key this LiveTable caches under.
    pub fn cache_key(&self) -> &str {
        self.keys().cache_key()
    }

    /// The cache backend.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        self.shared.cache.cache()
    }

    /// The cache layer this LiveTable's stack caches through.
    pub fn cache_layer(&self) -> &CacheLayer {
        &self.shared.cache
    }

    /// The master table.
    pub fn master(&self) -> &AnyTable {
        &self.shared.master
    }

    /// Whether reads of the current view can be served from the cache (no
    /// opaque conditions are set).
    pub fn is_cacheable(&self) -> bool {
        self.view.is_cacheable()
    }

    fn keys(&self) -> &SlotKeys {
        self.shared.cache.slot_keys()
    }

    /// The cache slot key of the current view's list at `page`. For
    /// debugging and tests.
    ///
    /// `page` is a pagination (`Some(Pagination::new(2, 10))`, or `None` for
    /// the unpaginated list), or, as vantage-live 0.4.8 took it, a page
    /// number: page `n` at the view's page size, where a view without
    /// pagination is one page (page 1 is the unpaginated list).
    pub fn page_cache_key(&self, page: impl Into<PageSelector>) -> String {
        let pagination = match page.into() {
            PageSelector::Pagination(pagination) => pagination,
            PageSelector::Number(n) => match self.pagination {
                Some(p) => Some(Pagination::new(n, p.get_ipp())),
                None if n == 1 => None,
                None => Some(Pagination::new(n, Pagination::default().get_ipp())),
            },
        };
        self.keys()
            .list(&self.view.clone().with_pagination(pagination))
    }

    /// The cache slot key of row `id` in the current view. For debugging and
    /// tests.
    pub fn id_cache_key(&self, id: &str) -> String {
        self.keys().id(&self.view, id)
    }

    /// The cache slot key of the current view's count. For debugging and
    /// tests.
    pub fn count_cache_key(&self) -> String {
        self.keys().count(&self.view)
    }

    /// The master with this view's conditions applied (for metadata calls
    /// such as `get_ref` that need a real table).
    fn view_table(&self) -> Result<AnyTable> {
        let mut table = match &self.opaque {
            Some(o) => o.table.clone(),
            None => self.shared.master.clone(),
        };
        for (field, value) in self.view.eq_conditions() {
            table.add_condition_eq(field, value)?;
        }
        table.set_pagination(self.pagination);
        Ok(table)
    }

    fn set_opaque(&mut self, opaque: Option<Opaque>) {
        let mut view = View::new().with_pagination(self.pagination);
        for (field, value) in self.view.eq_conditions() {
            view = view.with_eq(field.clone(), value.clone());
        }
        if let Some(o) = &opaque {
            view = view.with_handle(o.table.clone());
        }
        self.view = view;
        self.opaque = opaque;
    }

    fn opaque_base(&self) -> Opaque {
        self.opaque.clone().unwrap_or_else(|| Opaque {
            table: self.shared.master.clone(),
            permanent: false,
            temporary: 0,
        })
    }
}

impl<S> fmt::Debug for LiveTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("LiveTable");
        out.field("cache_key", &self.cache_key())
            .field("master", &self.shared.master)
            .field("view", &self.view);
        match &self.shared.config {
            Some(config) => out
                .field("master_ipp", &config.master_ipp)
                .field(
                    "write_target",
                    &config.write_target.as_ref().map(|t| t.table_name()),
                )
                .field("stack", &"default"),
            None => out.field("stack", &"custom"),
        };
        out.finish()
    }
}
