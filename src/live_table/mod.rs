//! [`LiveTable`]: an `AnyTable` with a cache in front, as a tower stack.

mod table_like;
mod value_set;

use std::fmt;
use std::sync::Arc;

use tower::util::{option_layer, Either};
use tower::{Layer, ServiceBuilder, ServiceExt};
use vantage_core::Result;
use vantage_live_layers::error::into_vantage_error;
use vantage_live_layers::write_queue::DEFAULT_BOUND;
use vantage_live_layers::{
    Cache, CacheLayer, CacheService, EventStatus, IdGenerator, InvalidateOnEvent,
    InvalidateOnEventLayer, LiveStream, PublishInvalidations, PublishInvalidationsLayer, Publisher,
    Request, Response, SlotKeys, Stats, StatsSnapshot, TableService, Tracing, TracingLayer, View,
    WriteQueue, WriteQueueLayer,
};
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

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

/// The stack a [`LiveTable`] runs its requests through, outermost first:
/// tracing, the event layer (with a live stream), the write queue, the
/// cache, the table service.
///
/// [`Tracing`] is outermost, so its span covers everything a request does
/// below it and its one `ERROR` per failed request is exactly what the
/// caller sees. Its span is current when the write queue takes a write, so
/// the queue carries it into the write's task: a write's invalidation and
/// failure land in the trace of the request that made it.
///
/// Order matters. The cache layer sits directly on the table service, so a
/// write's invalidation is part of the cache layer's write future. The write
/// queue sits above it, so that whole future, invalidation included, runs on
/// the write's own detached task: it completes even when the caller has gone,
/// and before the caller's reply is sent. Reads bypass the queue and go
/// straight to the cache layer, so they never wait behind writes.
///
/// With a live stream ([`LiveTable::with_live_stream`]) the stack is
/// `Either::Left`, with [`InvalidateOnEvent`] outermost: it passes requests
/// through, and its background task (which invalidates through the cache
/// layer's own fence) lives exactly as long as the stack. Without one it is
/// `Either::Right`, the core stack alone.
pub type LiveStack = Tracing<Either<InvalidateOnEvent<CoreStack>, CoreStack>>;

/// The stack below the event layer: write queue, publisher (a pass-through
/// without [`LiveTable::with_publisher`]), cache, master.
pub type CoreStack = WriteQueue<PublishInvalidations<CacheService<TableService>>>;

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
/// (through this LiveTable or any LiveTable sharing its cache and cache_key;
/// share a cache by passing clones of one `Arc`). Changes made behind the
/// LiveTables' backs show up once an event for them has been processed
/// ([`LiveTable::with_live_stream`]). In detail:
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
///   after it. This holds for `MemCache` and `RedbCache`; for a third-party
///   [`Cache`] see [`Cache::generation`].
/// - **Single flight.** Concurrent misses of one slot (one page at one page
///   size, one id, one count) on a LiveTable and its clones make one master
///   read, and every waiter gets that result. An error reaches every waiter
///   and is not cached. A waiter that gives up (drops its future, times out)
///   does not cancel the read for the others.
/// - **Master outages.** Warm slots keep serving while the master fails; a
///   cold read returns the master's error as soon as the master returns it
///   (the LiveTable adds no retries and no timeouts).
/// - **Cache faults cost speed, never correctness.** A cache `get` that fails
///   or answers bytes that do not decode is a miss (with a `warn!`); a failed
///   `put` still returns the master's rows (with a `warn!`). If dropping the
///   cache_key fails after a write or an event, the write still succeeds, and
///   every LiveTable sharing the cache and cache_key falls back to reading
///   the master without the cache (retrying the invalidation on each read,
///   with a `warn!`) until an invalidation started after the failure
///   succeeds: a stale slot is never served. See [`CacheLayer`] for the
///   details.
///
/// # Writes
///
/// Writes go through a bounded queue ([`WriteQueueLayer`]) shared by every
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
/// # Cloning
///
/// Clones share the stack (and so the write queue), the cache and the
/// master, and each has its own view: setting pagination or conditions on
/// one clone does not change another. The `with_*` builders make a new stack
/// with a queue of its own: configure a LiveTable before using it.
#[derive(Clone)]
pub struct LiveTable {
    shared: Arc<Shared>,
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

struct Shared {
    config: Config,
    keys: SlotKeys,
    stats: Arc<Stats>,
    stack: LiveStack,
}

#[derive(Clone)]
struct Config {
    master: AnyTable,
    cache_key: String,
    cache: Arc<dyn Cache>,
    master_ipp: Option<i64>,
    write_target: Option<AnyTable>,
    ids: Option<IdGenerator>,
    live_stream: Option<Arc<dyn LiveStream>>,
    publisher: Option<Arc<dyn Publisher>>,
    write_queue_bound: usize,
}

impl Config {
    fn build(self) -> Shared {
        let mut table = TableService::new(self.master.clone());
        if let Some(target) = &self.write_target {
            table = table.with_write_target(target.clone());
        }
        if let Some(ids) = &self.ids {
            table = table.with_id_generator(ids.clone());
        }
        let cache = CacheLayer::new(self.cache.clone(), self.cache_key.clone());
        let keys = cache.slot_keys().clone();
        let stats = cache.stats();
        let events = self
            .live_stream
            .clone()
            .map(|stream| InvalidateOnEventLayer::new(stream, cache.invalidator()));
        // Outermost first; see `LiveStack` for why the order is this one.
        // The publisher sits under the queue, over the cache: it publishes on
        // the write's detached task, after the write's invalidation.
        let publish =
            PublishInvalidationsLayer::optional(self.publisher.clone(), self.cache_key.clone());
        let core = ServiceBuilder::new()
            .layer(WriteQueueLayer::with_bound(self.write_queue_bound))
            .layer(publish)
            .layer(cache)
            .service(table);
        let stack =
            TracingLayer::new(self.cache_key.clone()).layer(option_layer(events).layer(core));
        Shared {
            keys,
            stats,
            stack,
            config: self,
        }
    }
}

impl LiveTable {
    /// Wrap `master` with `cache`, caching under `cache_key`.
    ///
    /// The cache_key is the caller's to choose and own: LiveTables that share
    /// a cache (clones of one `Arc`) and a cache_key share slots and
    /// invalidations, so give each distinct view of data its own key. Any
    /// text works.
    ///
    /// The LiveTable starts with the master's current pagination.
    pub fn new(master: AnyTable, cache_key: impl Into<String>, cache: Arc<dyn Cache>) -> Self {
        let pagination = master.get_pagination().copied();
        let config = Config {
            master,
            cache_key: cache_key.into(),
            cache,
            master_ipp: None,
            write_target: None,
            ids: None,
            live_stream: None,
            publisher: None,
            write_queue_bound: DEFAULT_BOUND,
        };
        tracing::info!(cache_key = %config.cache_key, "LiveTable constructed");
        Self {
            shared: Arc::new(config.build()),
            pagination,
            view: View::new().with_pagination(pagination),
            opaque: None,
        }
    }

    fn rebuild(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        self.shared = Arc::new(config.build());
        self
    }

    /// Record the master's items per page. It is set once: changing it would
    /// invalidate every cached page, so make a new LiveTable instead.
    ///
    /// Stored for callers and future multi-page reads; reads do not use it
    /// yet (keep the UI's page size at or below the master's).
    pub fn with_master_ipp(self, ipp: i64) -> Self {
        self.rebuild(|c| c.master_ipp = Some(ipp))
    }

    /// Send writes to `target` instead of the master; reads stay on the
    /// master.
    ///
    /// Writes to the target go through the same queue, with the same
    /// guarantees (first in first out, detached completion).
    ///
    /// A successful write still invalidates this LiveTable's own cache_key
    /// (the one its reads are cached under), and nothing else: the target
    /// commonly feeds the master (a review queue merged into it, a trigger),
    /// so rows read before the write may be stale after it, and dropping
    /// slots only ever costs a re-read. A write the target rejects leaves the
    /// cache as it was. The target's own cache, if it has a LiveTable of its
    /// own, is not touched.
    pub fn with_custom_write_target(self, target: AnyTable) -> Self {
        self.rebuild(|c| c.write_target = Some(target))
    }

    /// Generate the ids of `insert_return_id_value` with `ids`.
    ///
    /// `AnyTable` has no insert-returning-id call, so the LiveTable makes the
    /// id and inserts the row under it. By default ids are UUID v7 text
    /// (time-ordered, unique without a round trip); supply a generator when
    /// the master's ids must follow another format.
    pub fn with_id_generator(self, ids: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let ids: IdGenerator = Arc::new(ids);
        self.rebuild(|c| c.ids = Some(ids))
    }

    /// Keep the cache honest with `stream`: every event it yields drops the
    /// whole cache_key, so changes made outside this LiveTable (another
    /// process, plain SQL, a trigger) show up in the next reads.
    ///
    /// A background task consumes the stream. It starts now if called inside
    /// a tokio runtime, else on the first read or write. A stream that ends
    /// is subscribed again with bounded, jittered backoff, and each
    /// subscription drops the cache_key (events may have been missed). The
    /// task ends when the last clone of this LiveTable is dropped. See
    /// [`InvalidateOnEventLayer`] for the details and
    /// [`LiveTable::live_stream_status`] to watch it.
    pub fn with_live_stream(self, stream: Arc<dyn LiveStream>) -> Self {
        self.rebuild(|c| c.live_stream = Some(stream))
    }

    /// Publish every acknowledged write to `publisher` (a message bus such
    /// as `NatsPublisher`), so that other processes drop their cached slots
    /// of this cache_key: the invalidation fan-out that keeps per-process
    /// caches (a `MemCache`, the tier 1 of a `TieredCache`) coherent.
    ///
    /// Each write that succeeds is published on its own detached task, after
    /// its local invalidation and before it answers; a publish that fails or
    /// takes over a second is a `warn!`, never a failed write. The other
    /// processes listen with [`with_live_stream`](LiveTable::with_live_stream)
    /// on the same bus. See
    /// [`PublishInvalidationsLayer`](vantage_live_layers::PublishInvalidationsLayer).
    pub fn with_publisher(self, publisher: Arc<dyn Publisher>) -> Self {
        self.rebuild(|c| c.publisher = Some(publisher))
    }

    /// Watch the live-stream task (`None` without
    /// [`with_live_stream`](LiveTable::with_live_stream)): subscriptions,
    /// events handled, whether it is subscribed.
    pub fn live_stream_status(&self) -> Option<EventStatus> {
        match self.shared.stack.get_ref() {
            Either::Left(events) => Some(events.status()),
            Either::Right(_) => None,
        }
    }

    /// Let up to `bound` accepted writes wait in the write queue (default
    /// 256); writers beyond that wait for room. See
    /// [choosing a bound](vantage_live_layers::write_queue#choosing-a-bound).
    /// A bound of 0 is taken as 1.
    pub fn with_write_queue_bound(self, bound: usize) -> Self {
        self.rebuild(|c| c.write_queue_bound = bound.max(1))
    }

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
        self.shared.stats.snapshot()
    }

    /// How many accepted writes may wait in the write queue.
    pub fn write_queue_bound(&self) -> usize {
        self.shared.config.write_queue_bound
    }

    /// The master's items per page, as given to [`LiveTable::with_master_ipp`].
    pub fn master_ipp(&self) -> Option<i64> {
        self.shared.config.master_ipp
    }

    /// The cache_key this LiveTable caches under.
    pub fn cache_key(&self) -> &str {
        &self.shared.config.cache_key
    }

    /// The cache backend.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.shared.config.cache
    }

    /// The master table.
    pub fn master(&self) -> &AnyTable {
        &self.shared.config.master
    }

    /// Whether reads of the current view can be served from the cache (no
    /// opaque conditions are set).
    pub fn is_cacheable(&self) -> bool {
        self.view.is_cacheable()
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
        self.shared
            .keys
            .list(&self.view.clone().with_pagination(pagination))
    }

    /// The cache slot key of row `id` in the current view. For debugging and
    /// tests.
    pub fn id_cache_key(&self, id: &str) -> String {
        self.shared.keys.id(&self.view, id)
    }

    /// The cache slot key of the current view's count. For debugging and
    /// tests.
    pub fn count_cache_key(&self) -> String {
        self.shared.keys.count(&self.view)
    }

    /// Run one request through the stack.
    async fn call(&self, request: Request) -> Result<Response> {
        self.shared
            .stack
            .clone()
            .oneshot(request)
            .await
            .map_err(into_vantage_error)
    }

    /// The master with this view's conditions applied (for metadata calls
    /// such as `get_ref` that need a real table).
    fn view_table(&self) -> Result<AnyTable> {
        let mut table = match &self.opaque {
            Some(o) => o.table.clone(),
            None => self.shared.config.master.clone(),
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
            table: self.shared.config.master.clone(),
            permanent: false,
            temporary: 0,
        })
    }
}

impl fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTable")
            .field("cache_key", &self.shared.config.cache_key)
            .field("master", &self.shared.config.master)
            .field("master_ipp", &self.shared.config.master_ipp)
            .field("view", &self.view)
            .field(
                "write_target",
                &self
                    .shared
                    .config
                    .write_target
                    .as_ref()
                    .map(|t| t.table_name()),
            )
            .finish()
    }
}
