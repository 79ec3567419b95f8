//! The stack [`LiveTable::new`] assembles, and the builders that choose its
//! settings.

use std::sync::Arc;
use std::time::Duration;

use tower::util::{option_layer, BoxCloneSyncService, Either};
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use vantage_live_layers::outbox::{OutboxHandle, OutboxLayer, OutboxStats};
use vantage_live_layers::write_queue::DEFAULT_BOUND;
use vantage_live_layers::{
    Cache, CacheLayer, CacheService, Clock, EventStatus, Freshness, IdGenerator, InvalidateOnEvent,
    InvalidateOnEventLayer, LiveStream, MasterPages, MasterPagesLayer, Outbox,
    PublishInvalidations, PublishInvalidationsLayer, Publisher, Request, Response, TableService,
    Tracing, TracingLayer, View, WriteQueue, WriteQueueLayer,
};
use vantage_table::any::AnyTable;
use vantage_table::traits::table_like::TableLike;

use super::{LiveTable, Shared};

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

/// The stack below the event layer: the write queue (or, with
/// [`LiveTable::with_outbox`], the outbox: `Either::Right`), the cache, the
/// master (with its middleware).
pub type CoreStack = Either<WriteQueue<CachedMaster>, Outbox<CachedMaster>>;

/// The publisher (a pass-through without [`LiveTable::with_publisher`])
/// over the multi-page glue (a pass-through without
/// [`LiveTable::with_master_ipp`]) over the cache layer over the master
/// service.
pub type CachedMaster = PublishInvalidations<MasterPages<CacheService<MasterService>>>;

/// The service under the cache layer: the [`TableService`] over the master,
/// behind any middleware added with [`LiveTable::with_master_layer`], boxed
/// so that the stack's type does not depend on it. A hit never reaches it;
/// a miss or a write pays one virtual call and one box more.
pub type MasterService = BoxCloneSyncService<Request, Response, BoxError>;

/// Middleware put around the master service.
type Middleware = Arc<dyn Fn(MasterService) -> MasterService + Send + Sync>;

/// The settings of the default stack: what the builders set, and all that a
/// `with_*` call changes. Nothing here runs until the stack is assembled.
#[derive(Clone)]
pub(super) struct Config {
    pub(super) master_ipp: Option<i64>,
    pub(super) write_target: Option<AnyTable>,
    ids: Option<IdGenerator>,
    live_stream: Option<Arc<dyn LiveStream>>,
    write_queue_bound: usize,
    /// Middleware around the master, innermost first.
    master_layers: Vec<Middleware>,
    /// The outbox, in place of the write queue.
    outbox: Option<OutboxLayer>,
    /// Where acknowledged writes are published (the fan-out to other
    /// processes).
    publisher: Option<Arc<dyn Publisher>>,
    /// The event layer, made with the settings (it starts nothing until the
    /// first request), so that its status can be watched before first use.
    events: Option<InvalidateOnEventLayer>,
    /// Max age, stale-while-revalidate window and clock of the cache layer.
    freshness: Freshness,
    /// Writes and events that name a row drop only what it can change.
    row_invalidation: bool,
}

impl Config {
    fn new() -> Self {
        Self {
            master_ipp: None,
            write_target: None,
            ids: None,
            live_stream: None,
            write_queue_bound: DEFAULT_BOUND,
            master_layers: Vec::new(),
            outbox: None,
            publisher: None,
            events: None,
            freshness: Freshness::default(),
            row_invalidation: false,
        }
    }
}

impl LiveTable {
    /// Wrap `master` with `cache`, caching under `cache_key`.
    ///
    /// The cache_key is the caller's to choose and own: LiveTables that share
    /// a cache backend (the same instance or clones of it) and a cache_key
    /// share slots and invalidations, so give each distinct view of data its
    /// own key. Any text works.
    ///
    /// The LiveTable starts with the master's current pagination. Nothing
    /// runs until its first read or write (see [Building](LiveTable#building)).
    pub fn new(master: AnyTable, cache_key: impl Into<String>, cache: Arc<dyn Cache>) -> Self {
        let cache_key = cache_key.into();
        tracing::info!(cache_key = %cache_key, "LiveTable constructed");
        let pagination = master.get_pagination().copied();
        let cache = CacheLayer::new(cache, cache_key);
        Self {
            shared: Arc::new(Shared::new(
                master,
                cache,
                Some(Config::new()),
                None,
                Some(assemble),
            )),
            pagination,
            view: View::new().with_pagination(pagination),
            opaque: None,
        }
    }

    /// A LiveTable with the same master, cache and view, whose default stack
    /// has `change`d settings (and state of its own: a new cache layer with
    /// fresh counters, a new write queue).
    fn rebuild(mut self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone().unwrap_or_else(Config::new);
        change(&mut config);
        let cache = CacheLayer::new(
            self.shared.cache.cache().clone(),
            self.shared.cache.slot_keys().cache_key().to_owned(),
        )
        .with_freshness(config.freshness.clone());
        let cache = if config.row_invalidation {
            cache.with_row_invalidation()
        } else {
            cache
        };
        config.events = config
            .live_stream
            .clone()
            .map(|stream| InvalidateOnEventLayer::new(stream, cache.invalidator()));
        self.shared = Arc::new(Shared::new(
            self.shared.master.clone(),
            cache,
            Some(config),
            None,
            Some(assemble),
        ));
        self
    }

    fn config(&self) -> Option<&Config> {
        self.shared.config.as_ref()
    }

    /// Treat cached slots older than `max_age` as misses (or, with
    /// [`with_stale_while_revalidate`](LiveTable::with_stale_while_revalidate),
    /// serve them stale while refreshing). Age counts from when the master
    /// read that filled a slot started, so it holds across restarts over a
    /// persistent cache. Without it (the default) a slot lives until a
    /// write, an event or a (re)subscribe drops it: use a max age for a
    /// master without a live stream. See [`Freshness`].
    pub fn with_max_age(self, max_age: Duration) -> Self {
        self.rebuild(|c| c.freshness = c.freshness.clone().with_max_age(max_age))
    }

    /// Serve a slot up to `window` past its max age at once and refresh it
    /// in the background (one master read per slot at a time, fenced: a
    /// refresh that overlaps a write or event stores nothing; a failed one
    /// leaves the stale slot serving within the window, with a `warn!`).
    ///
    /// With a live stream, a (re)subscribe then marks every slot filled
    /// before it as stale instead of dropping the cache_key: an app that
    /// restarts over a persisted cache answers at once from it, refreshes
    /// what it serves, and never serves such a slot as fresh.
    /// [`LiveTable::stats`] counts stale hits and refreshes.
    pub fn with_stale_while_revalidate(self, window: Duration) -> Self {
        self.rebuild(|c| c.freshness = c.freshness.clone().with_stale_while_revalidate(window))
    }

    /// Drop only the cached slots a change to one row can make wrong,
    /// instead of the whole cache_key, after a `patch`, `insert`, `replace`,
    /// `delete` or `insert_return_id` through this table (or any table
    /// sharing its cache and cache_key) and on a live event that names a
    /// row. Scrolling back over pages after editing one row then reads the
    /// master for the page that holds the row only.
    ///
    /// Which slots survive which change, and why none of them can answer
    /// differently from the master:
    ///
    /// - a `patch` (or an `Updated` event) drops every slot holding the row
    ///   and every conditioned list and count; plain pages and lists that
    ///   do not hold the row, the plain count, and other rows' `get` slots
    ///   stay;
    /// - a `delete` drops the row's slots, counts, unpaginated lists, and
    ///   the pages from the first page that held the row on (pages before
    ///   it keep their rows);
    /// - an `insert`, `replace` or `insert_return_id` drops every list and
    ///   count (the row can land anywhere; SQLite's replace is a delete and
    ///   an insert) and the row's own `get` slots; other rows' `get` slots
    ///   stay.
    ///
    /// **Use it only where the cache can trust a write to say what it
    /// changed**: a patch moves no row (the master is ordered by something
    /// a patch does not change: vantage-redb's key order, a SQL table
    /// ordered by its id; not PostgreSQL without an order, which may move
    /// an updated row), a write changes only the row it names (no
    /// cascades, triggers or id changes), and every change by other
    /// writers reaches the cache as a live event. The cache can check none
    /// of these; [`CacheLayer::with_row_invalidation`](crate::CacheLayer::with_row_invalidation)
    /// says why each matters. Everything else falls back to dropping the
    /// whole cache_key: `delete_all`, a bare `Changed` event, a write that
    /// overlapped another write on the same cache and cache_key, and any
    /// backend that cannot vouch for what its slots hold (`RedisCache`,
    /// `TieredCache`, slots an earlier run left in a `RedbCache`, slots a
    /// (re)subscribe marked stale; until the first whole drop). See
    /// [`RowChange`](crate::RowChange) for the rules and why they hold.
    /// [`LiveTable::stats`] counts them as `row_invalidations`.
    pub fn with_row_invalidation(self) -> Self {
        self.rebuild(|c| c.row_invalidation = true)
    }

    /// Age and stamp cached slots by `clock` instead of the system's wall
    /// clock: tests move a [`ManualClock`](crate::ManualClock) by hand.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(|c| c.freshness = c.freshness.clone().with_clock(clock))
    }

    /// Record the master's items per page. It is set once: changing it would
    /// invalidate every cached page, so make a new LiveTable instead.
    ///
    /// Pages at any other size are then served from master pages of `ipp`
    /// rows, each read (single flight) and cached under its own slot: a UI
    /// page larger than a master page is assembled from the master pages it
    /// spans, a smaller one is cut from the master page that holds it, so
    /// scrolling at 25 per page over a master page of 10 reads each master
    /// page once. An assembled page is checked against the cache's
    /// invalidations and read again if one fell between its master pages
    /// (see [`MasterPagesLayer`]). A size below 1 is taken as 1.
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
    /// A background task consumes the stream. It starts with the first read
    /// or write (which waits for its first subscription), or with
    /// [`LiveTable::start_live_stream`]. A stream that ends is subscribed
    /// again with bounded, jittered backoff, and each subscription drops the
    /// cache_key (events may have been missed). The task ends when the last
    /// clone of this LiveTable is dropped. See [`InvalidateOnEventLayer`] for
    /// the details and [`LiveTable::live_stream_status`] to watch it.
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

    /// Start the live-stream task now (on the current tokio runtime) instead
    /// of with the first read or write. Useful to be listening before the
    /// first request, or in tests that wait on
    /// [`live_stream_status`](LiveTable::live_stream_status). Does nothing
    /// without a live stream, if the task runs already, or outside a
    /// runtime.
    pub fn start_live_stream(&self) {
        if let Some(events) = self.config().and_then(|c| c.events.as_ref()) {
            events.start();
        }
    }

    /// Watch the live-stream task (`None` without
    /// [`with_live_stream`](LiveTable::with_live_stream)): subscriptions,
    /// events handled, whether it is subscribed.
    pub fn live_stream_status(&self) -> Option<EventStatus> {
        self.config()
            .and_then(|c| c.events.as_ref())
            .map(InvalidateOnEventLayer::status)
    }

    /// Let up to `bound` accepted writes wait in the write queue (default
    /// 256); writers beyond that wait for room. See
    /// [choosing a bound](vantage_live_layers::write_queue#choosing-a-bound).
    /// A bound of 0 is taken as 1.
    pub fn with_write_queue_bound(self, bound: usize) -> Self {
        self.rebuild(|c| c.write_queue_bound = bound.max(1))
    }

    /// Put `layer` (tower middleware: a timeout, a concurrency or rate
    /// limit, retries, load shedding, your own) around the master, below the
    /// cache: it sees every master read (a miss) and every write, never a
    /// hit. Called again, the new layer goes around the previous ones.
    ///
    /// The layer's errors reach the caller as `VantageError`s that say what
    /// happened (a timeout says it timed out; see
    /// [`into_vantage_error`](crate::into_vantage_error)); a read that fails
    /// is not cached, a write that fails leaves the cache as it was.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use vantage_live::{LiveTable, MemCache};
    /// # fn demo(master: vantage_table::any::AnyTable) {
    /// use tower::ServiceBuilder;
    /// let live = LiveTable::new(master, "products", Arc::new(MemCache::new())).with_master_layer(
    ///     ServiceBuilder::new()
    ///         .concurrency_limit(4) // at most 4 master calls at once
    ///         .timeout(Duration::from_secs(5)),
    /// );
    /// # let _ = live; }
    /// ```
    pub fn with_master_layer<L>(self, layer: L) -> Self
    where
        L: Layer<MasterService> + Send + Sync + 'static,
        L::Service: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Error: Into<BoxError>,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        let wrap: Middleware = Arc::new(move |inner| {
            MasterService::new(layer.layer(inner).map_err(Into::<BoxError>::into))
        });
        self.rebuild(|c| c.master_layers.push(wrap))
    }

    /// Accept writes offline: writes go to a durable outbox in `folder`
    /// (opened now) instead of the write queue, and are applied to the
    /// master in the background, in order, exactly once; reads show them
    /// while they are pending. See [`OutboxLayer`] for the guarantees and
    /// the rules of the overlay.
    ///
    /// With an outbox a write's `Ok` means *stored locally*, not *applied*:
    /// `insert_value` and `replace_value` answer the record as written,
    /// `patch_value` the partial as written, `insert_return_id_value` the id
    /// generated (and stored) before the answer. The master's verdict comes
    /// through [`LiveTable::outbox`] ([`OutboxHandle::verdict`],
    /// [`OutboxHandle::subscribe`], [`OutboxHandle::dead_letters`]), or use
    /// [`OutboxHandle::submit`] to get a [`Receipt`](vantage_live_layers::outbox::Receipt)
    /// per write. Writes the master rejects wait in the dead-letter list.
    ///
    /// Fails, naming the file, if the outbox file is corrupt, truncated or
    /// open elsewhere; the master is not touched. One outbox folder per
    /// master table. This does blocking file I/O.
    ///
    /// Writes left pending by an earlier process are applied once the drain
    /// starts: with the first request through the LiveTable, or
    /// [`OutboxHandle::start`] (`live.outbox().unwrap().start()`), on the
    /// current tokio runtime.
    pub fn with_outbox(
        self,
        folder: impl AsRef<std::path::Path>,
    ) -> std::result::Result<Self, vantage_live_layers::outbox::error::OpenOutboxError> {
        let layer = OutboxLayer::open(folder)?;
        Ok(self.with_outbox_layer(layer))
    }

    /// Use `outbox` (already opened, configured as you like: its maximum of
    /// pending writes, its classification, its backoff) in place of the
    /// write queue; see [`LiveTable::with_outbox`]. The LiveTable gives it
    /// the table writes go to (to recognise replays) and its id generator.
    pub fn with_outbox_layer(self, outbox: OutboxLayer) -> Self {
        self.rebuild(|c| c.outbox = Some(outbox))
    }

    /// The outbox, with [`LiveTable::with_outbox`]: pending writes
    /// ([`OutboxHandle::pending_ids`] to grey rows out), dead letters,
    /// verdicts.
    pub fn outbox(&self) -> Option<&OutboxHandle> {
        // The outbox's drain runs through the stack below it: assemble the
        // stack (it starts nothing) so that `start()` has it.
        let _ = self.stack();
        self.config()
            .and_then(|c| c.outbox.as_ref())
            .map(OutboxLayer::handle)
    }

    /// The ids of rows with writes waiting in the outbox (empty without
    /// one).
    pub fn pending_ids(&self) -> Vec<String> {
        self.outbox()
            .map(OutboxHandle::pending_ids)
            .unwrap_or_default()
    }

    /// The outbox's counters (`None` without one): pending writes, dead
    /// letters, applied, rejected, unreachable attempts.
    pub fn outbox_stats(&self) -> Option<OutboxStats> {
        self.outbox().map(OutboxHandle::stats)
    }

    /// How many accepted writes may wait in the write queue.
    pub fn write_queue_bound(&self) -> usize {
        self.config().map_or(DEFAULT_BOUND, |c| c.write_queue_bound)
    }

    /// The master's items per page, as given to [`LiveTable::with_master_ipp`].
    pub fn master_ipp(&self) -> Option<i64> {
        self.config().and_then(|c| c.master_ipp)
    }
}

/// Assemble the default stack from the settings.
pub(super) fn assemble(shared: &Shared<LiveStack>) -> LiveStack {
    let config = shared.config.clone().unwrap_or_else(Config::new);
    let cache = shared.cache.clone();
    let mut table = TableService::new(shared.master.clone());
    if let Some(target) = &config.write_target {
        table = table.with_write_target(target.clone());
    }
    if let Some(ids) = &config.ids {
        table = table.with_id_generator(ids.clone());
    }
    let cache_key = cache.slot_keys().cache_key().to_owned();
    let write_table = table.write_table().clone();
    let invalidator = cache.invalidator();
    let mut master = MasterService::new(table.map_err(Into::<BoxError>::into));
    for wrap in &config.master_layers {
        master = wrap(master);
    }
    // Outermost first; see `LiveStack` for why the order is this one. The
    // outbox, if any, takes the write queue's place. The publisher sits under
    // the queue (or outbox), over the cache: it publishes on the write's
    // detached task, after the write's invalidation.
    let publish = PublishInvalidationsLayer::optional(config.publisher.clone(), cache_key.clone());
    let pages = MasterPagesLayer::optional(config.master_ipp).fenced_by(&cache);
    let cached = ServiceBuilder::new()
        .layer(publish)
        .layer(pages)
        .layer(cache)
        .service(master);
    let core = match &config.outbox {
        None => Either::Left(WriteQueueLayer::with_bound(config.write_queue_bound).layer(cached)),
        Some(outbox) => {
            let mut outbox = outbox
                .clone()
                .verify_table(write_table)
                .invalidator(invalidator);
            if let Some(ids) = &config.ids {
                outbox = outbox.id_generator(ids.clone());
            }
            Either::Right(outbox.layer(cached))
        }
    };
    TracingLayer::new(cache_key).layer(option_layer(config.events).layer(core))
}
