use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, FutureExt};
use tower::{Service, ServiceExt};
use tracing::Instrument as _;
use vantage_core::{Result, VantageError};
use vantage_types::Record;

use super::backend::{Cache, CachedRows};
use super::fence::Fence;
use super::slot::SlotKeys;
use crate::request::{Request, Response, Rows, Value};
use crate::stats::Stats;

/// State shared by every clone of one [`CacheLayer`](super::CacheLayer) and
/// the services it built.
pub(crate) struct Shared {
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) keys: SlotKeys,
    /// The stack's counters (see [`Stats`]).
    pub(crate) stats: Arc<Stats>,
    /// The cache_key's epoch (bumped on every invalidation; a fill that saw
    /// another value before asking the master does not install its rows) and
    /// poison (an invalidation failed: reads bypass the backend until a later
    /// one succeeds), shared with every stack caching this cache_key in this
    /// backend.
    fence: Arc<Fence>,
    /// Bumped after every fill this stack installs: a read that missed looks
    /// at the backend again before reading the master only if a fill landed
    /// since it looked.
    fills: AtomicU64,
    /// Master reads in flight, by slot and the fence they were started at.
    flights: Mutex<HashMap<FlightKey, Flight>>,
}

/// What a flight answers: shared by every waiter.
type FlightResult = std::result::Result<Arc<Response>, Arc<VantageError>>;
type Flight = futures_util::future::Shared<BoxFuture<'static, FlightResult>>;

/// A flight is joined only by reads of the same slot that saw the same epoch
/// and cache generation (so no invalidation happened in between).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlightKey {
    slot: String,
    epoch: u64,
    generation: Option<u64>,
}

impl Shared {
    pub(crate) fn new(cache: Arc<dyn Cache>, keys: SlotKeys) -> Self {
        Self {
            fence: Fence::shared(&cache, keys.prefix()),
            cache,
            keys,
            stats: Arc::new(Stats::new()),
            fills: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Drop every slot of this cache_key. If the backend fails, the cache_key
    /// is poisoned: reads bypass the backend until an invalidation started
    /// after this one succeeds. (One started before it may have dropped the
    /// slots before this invalidation's write reached the master: its
    /// success does not clear this failure.)
    pub(crate) async fn invalidate(&self) -> Result<()> {
        let epoch = self.fence.bump();
        let prefix = self.keys.prefix();
        match self
            .cache
            .invalidate_prefix(prefix)
            .instrument(tracing::debug_span!("cache.invalidate_prefix", prefix))
            .await
        {
            Ok(()) => {
                self.fence.cleared(epoch);
                self.stats.invalidated();
                Ok(())
            }
            Err(error) => {
                self.fence.poison(epoch);
                Err(error)
            }
        }
    }

    /// Whether the backend can be trusted for reads: not poisoned, or the
    /// retried invalidation now succeeded.
    async fn usable(&self) -> bool {
        if !self.fence.is_poisoned() {
            return true;
        }
        match self.invalidate().await {
            Ok(()) if !self.fence.is_poisoned() => {
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

/// The service [`CacheLayer`](super::CacheLayer) builds: reads are served from
/// the cache or fill it; successful writes invalidate the cache_key.
///
/// See the [module docs](super) for what is cached and what is guaranteed.
pub struct CacheService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for CacheService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> CacheService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The cache_key this service caches under.
    pub fn cache_key(&self) -> &str {
        self.shared.keys.cache_key()
    }

    /// The slot keys of this service's cache_key.
    pub fn slot_keys(&self) -> &SlotKeys {
        &self.shared.keys
    }

    /// The cache backend.
    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.shared.cache
    }

    /// The counters this service shares with its layer (see [`Stats`]).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for CacheService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheService")
            .field("cache_key", &self.shared.keys.cache_key())
            .field("inner", &self.inner)
            .finish()
    }
}

/// Which kind of slot a read fills, and how its response maps to rows.
#[derive(Clone, Copy)]
enum SlotKind {
    List,
    Row,
    Count,
}

/// The id under which a count slot keeps its one row.
const COUNT_ROW: &str = "count";

impl SlotKind {
    /// The rows to store for `response`, or `None` if it is not cached (a
    /// missing row is not cached: the next read asks again).
    fn rows_of(self, response: &Response) -> Option<Rows> {
        match (self, response) {
            (SlotKind::List, Response::Rows(rows)) => Some(rows.clone()),
            (SlotKind::Row, Response::Row(Some(record))) => {
                let mut rows = Rows::with_capacity(1);
                // The id is the slot's; the row is stored under a fixed id.
                rows.insert(String::new(), record.clone());
                Some(rows)
            }
            (SlotKind::Count, Response::Count(n)) => {
                let mut record = Record::with_capacity(1);
                record.insert(COUNT_ROW.to_string(), Value::Integer((*n).into()));
                let mut rows = Rows::with_capacity(1);
                rows.insert(COUNT_ROW.to_string(), record);
                Some(rows)
            }
            _ => None,
        }
    }

    /// The response a cached slot answers with, or `None` if the slot does not
    /// have this kind's shape (then it is treated as a miss).
    fn response_from_rows(self, rows: Rows) -> Option<Response> {
        match self {
            SlotKind::List => Some(Response::Rows(rows)),
            // Exactly what `rows_of` stores: one row under the empty id (a
            // slot of any other shape is not this row, whatever it holds).
            SlotKind::Row => {
                if rows.len() != 1 {
                    return None;
                }
                let (id, record) = rows.into_iter().next()?;
                id.is_empty().then_some(Response::Row(Some(record)))
            }
            SlotKind::Count => {
                if rows.len() != 1 {
                    return None;
                }
                let record = rows.get(COUNT_ROW)?;
                match record.get(COUNT_ROW)? {
                    Value::Integer(n) => i64::try_from(*n).ok().map(Response::Count),
                    _ => None,
                }
            }
        }
    }
}

impl<S> Service<Request> for CacheService<S>
where
    S: Service<Request, Response = Response, Error = VantageError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = VantageError;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();

        let slot = match &request {
            Request::List(view) if view.is_cacheable() => {
                Some((SlotKind::List, shared.keys.list(view)))
            }
            Request::Get { view, id } if view.is_cacheable() => {
                Some((SlotKind::Row, shared.keys.id(view, id)))
            }
            Request::Count(view) if view.is_cacheable() => {
                Some((SlotKind::Count, shared.keys.count(view)))
            }
            Request::Write(_) => {
                return Box::pin(write_through(inner, shared, request));
            }
            Request::List(_) | Request::Get { .. } | Request::Count(_) => {
                tracing::debug!(
                    cache_key = shared.keys.cache_key(),
                    op = request.op(),
                    outcome = "bypass",
                    "opaque view: not cached"
                );
                None
            }
            _ => None,
        };
        match slot {
            Some((kind, key)) => Box::pin(read_through(inner, shared, request, kind, key)),
            None => {
                shared.stats.master_read();
                let mut inner = inner;
                Box::pin(async move { inner.call(request).await })
            }
        }
    }
}

async fn read_through<S>(
    inner: S,
    shared: Arc<Shared>,
    request: Request,
    kind: SlotKind,
    key: String,
) -> Result<Response>
where
    S: Service<Request, Response = Response, Error = VantageError> + Send + 'static,
    S::Future: Send + 'static,
{
    let cache_key = shared.keys.cache_key();
    if !shared.usable().await {
        tracing::warn!(
            cache_key,
            slot = %key,
            outcome = "bypass",
            "cache invalidation is failing; reading the master without the cache"
        );
        shared.stats.master_read();
        return inner.oneshot(request).await;
    }
    let fills_seen = shared.fills.load(Ordering::Acquire);
    let lookup = shared
        .cache
        .get(&key)
        .instrument(tracing::debug_span!("cache.get", slot = %key))
        .await;
    match lookup {
        Ok(Some(cached)) => match kind.response_from_rows(cached.rows) {
            Some(response) => {
                shared.stats.hit();
                tracing::debug!(cache_key, slot = %key, outcome = "hit");
                return Ok(response);
            }
            None => tracing::warn!(
                cache_key,
                slot = %key,
                outcome = "miss",
                "cached slot has the wrong shape; reading the master"
            ),
        },
        Ok(None) => tracing::debug!(cache_key, slot = %key, outcome = "miss"),
        Err(error) => tracing::warn!(
            cache_key,
            slot = %key,
            outcome = "miss",
            %error,
            "cache lookup failed; reading the master"
        ),
    }
    shared.stats.miss();

    // Fence the fill: note where invalidations stand before asking the master.
    let epoch = shared.fence.epoch();
    let generation = match shared
        .cache
        .generation(&key)
        .instrument(tracing::debug_span!("cache.generation", slot = %key))
        .await
    {
        Ok(g) => Some(g),
        Err(error) => {
            tracing::warn!(cache_key, slot = %key, %error, "cache generation unavailable; not filling");
            None
        }
    };

    // Single flight: concurrent misses of one slot at one epoch and
    // generation share one master read. A read issued after an invalidation
    // sees a new epoch or generation, so it never joins an older flight.
    let flight_key = FlightKey {
        slot: key.clone(),
        epoch,
        generation,
    };
    let flight = {
        let mut flights = shared.flights.lock().unwrap_or_else(|e| e.into_inner());
        match flights.get(&flight_key) {
            Some(flight) => {
                shared.stats.coalesced();
                tracing::debug!(cache_key, slot = %key, outcome = "coalesced");
                flight.clone()
            }
            None => {
                // The flight runs in the span of the read that started it.
                let task = tokio::spawn(
                    fetch_and_fill(
                        inner,
                        shared.clone(),
                        request,
                        kind,
                        flight_key.clone(),
                        fills_seen,
                    )
                    .instrument(tracing::Span::current()),
                );
                let flight: Flight = async move {
                    match task.await {
                        Ok(result) => result,
                        Err(join) => Err(Arc::new(vantage_core::error!(
                            "the master read failed unexpectedly",
                            details = join.to_string()
                        ))),
                    }
                }
                .boxed()
                .shared();
                flights.insert(flight_key, flight.clone());
                flight
            }
        }
    };
    match flight.await {
        Ok(response) => Ok(Arc::try_unwrap(response).unwrap_or_else(|shared| (*shared).clone())),
        Err(error) => Err(shared_error(&error)),
    }
}

/// One master read and fill, run on its own task so that a waiter giving up
/// does not cancel it for the others.
async fn fetch_and_fill<S>(
    inner: S,
    shared: Arc<Shared>,
    request: Request,
    kind: SlotKind,
    flight: FlightKey,
    fills_seen: u64,
) -> FlightResult
where
    S: Service<Request, Response = Response, Error = VantageError>,
{
    // The read that started this flight missed, but an earlier flight of the
    // slot may have filled it and left since (with a backend that answers
    // from another thread, a read can miss before that fill and look for a
    // flight after it). If a fill landed since the read looked, serve it
    // rather than read the master again. Any slot the backend holds is as
    // good as one found by the lookup at the start of the read: fills are
    // fenced, invalidations drop slots.
    let filled_since = shared.fills.load(Ordering::Acquire) != fills_seen;
    if let Some(response) = late_hit(&shared, kind, &flight.slot, filled_since).await {
        shared
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&flight);
        return Ok(Arc::new(response));
    }
    shared.stats.master_read();
    let result = inner.oneshot(request).await;
    if let Ok(response) = &result {
        fill(&shared, kind, &flight, response).await;
    }
    // Later reads start a new flight (and find the slot filled).
    shared
        .flights
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&flight);
    result.map(Arc::new).map_err(Arc::new)
}

/// A hit for `key` found after a miss, if a fill landed since the miss, the
/// backend can be trusted (no failed invalidation) and it now holds the slot
/// in the right shape.
async fn late_hit(
    shared: &Shared,
    kind: SlotKind,
    key: &str,
    filled_since: bool,
) -> Option<Response> {
    if !filled_since || !shared.cache.stores() || shared.fence.is_poisoned() {
        return None;
    }
    let cached = shared
        .cache
        .get(key)
        .instrument(tracing::debug_span!("cache.get", slot = %key))
        .await
        .ok()??;
    let response = kind.response_from_rows(cached.rows)?;
    tracing::debug!(
        cache_key = shared.keys.cache_key(),
        slot = %key,
        outcome = "hit",
        "filled by an earlier flight"
    );
    Some(response)
}

/// Store `response` in its slot, unless an invalidation happened since the
/// flight noted its epoch and generation.
async fn fill(shared: &Shared, kind: SlotKind, flight: &FlightKey, response: &Response) {
    // A backend that stores nothing (`NoCache`) would drop the rows: do not
    // copy them for it.
    if !shared.cache.stores() {
        return;
    }
    let cache_key = shared.keys.cache_key();
    let key = &flight.slot;
    let (Some(generation), Some(rows)) = (flight.generation, kind.rows_of(response)) else {
        return;
    };
    if shared.fence.epoch() != flight.epoch {
        tracing::debug!(cache_key, slot = %key, "invalidated while reading; not filling");
        return;
    }
    match shared
        .cache
        .put_if_generation(key, CachedRows::new(rows), generation)
        .instrument(tracing::debug_span!("cache.put", slot = %key))
        .await
    {
        Ok(true) => {
            shared.fills.fetch_add(1, Ordering::AcqRel);
            tracing::debug!(cache_key, slot = %key, outcome = "populated");
            // An invalidation may have slipped in between the check above and
            // the store; if so, the slot may hold old rows.
            if shared.fence.epoch() != flight.epoch {
                let drop_slot = shared
                    .cache
                    .invalidate_prefix(key)
                    .instrument(tracing::debug_span!("cache.invalidate_prefix", prefix = %key));
                if let Err(error) = drop_slot.await {
                    // The old rows may stay: distrust the backend.
                    shared.fence.poison(shared.fence.bump());
                    tracing::warn!(cache_key, slot = %key, %error, "could not drop a racing fill");
                }
            }
        }
        Ok(false) => {
            tracing::debug!(cache_key, slot = %key, "invalidated while reading; not filling")
        }
        Err(error) => tracing::warn!(
            cache_key,
            slot = %key,
            %error,
            "cache store failed; served the master's rows"
        ),
    }
}

/// Each waiter's own copy of a flight's error: the same message, with the
/// shared original as its source.
fn shared_error(error: &Arc<VantageError>) -> VantageError {
    use vantage_core::Context;
    Err::<(), _>(error.clone())
        .context(VantageError::other(error.to_string()))
        .unwrap_err()
}

async fn write_through<S>(inner: S, shared: Arc<Shared>, request: Request) -> Result<Response>
where
    S: Service<Request, Response = Response, Error = VantageError>,
{
    // If the write never settles (it panics, or its future is dropped while
    // the master may already have applied it), the cache may be stale: the
    // guard poisons it so reads bypass it until an invalidation succeeds.
    let guard = Unsettled(&shared);
    let outcome = inner.oneshot(request).await;
    std::mem::forget(guard);
    let response = match outcome {
        Ok(response) => {
            shared.stats.write_ok();
            response
        }
        Err(error) => {
            shared.stats.write_failed();
            return Err(error);
        }
    };
    if let Err(error) = shared.invalidate().await {
        tracing::warn!(
            cache_key = shared.keys.cache_key(),
            %error,
            "write succeeded but invalidating the cache failed; \
             reads bypass the cache until an invalidation succeeds"
        );
    } else {
        tracing::debug!(cache_key = shared.keys.cache_key(), outcome = "invalidated");
    }
    Ok(response)
}

/// Poisons the cache_key if dropped: armed while a write is in flight.
struct Unsettled<'a>(&'a Shared);

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        let epoch = self.0.fence.bump();
        self.0.fence.poison(epoch);
        self.0.stats.write_failed();
        tracing::warn!(
            cache_key = self.0.keys.cache_key(),
            "a write ended without an answer (panic or cancellation); \
             reads bypass the cache until an invalidation succeeds"
        );
    }
}
