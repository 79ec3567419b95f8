use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::FutureExt;
use tower::{BoxError, Service, ServiceExt};
use tracing::Instrument as _;

use super::backend::{Cache, Peek};
use super::cached::{CachedSlot, SlotKind, SlotValue};
use super::error::{ReadAborted, SharedError};
use super::flight::{Flight, FlightKey, FlightResult};
use super::freshness::{Age, Freshness};
use super::future::ResponseFuture;
use super::generations::{Namespace, Ticket};
use super::legacy::LayerFenced;
use super::row_index::RowChange;
use super::slot::{split_key, SlotKeys};
use crate::request::{Request, Response, WriteRequest};
use crate::stats::Stats;

/// State shared by every clone of one [`CacheLayer`](super::CacheLayer) and
/// the services it built.
pub(crate) struct Shared {
    /// The backend as given.
    pub(crate) cache: Arc<dyn Cache>,
    /// The backend the layer talks to: the one given if it owns its
    /// invalidation state, else the given one with state of this layer's.
    pub(crate) fenced: Arc<dyn Cache>,
    pub(crate) keys: SlotKeys,
    /// The stack's counters (see [`Stats`]).
    pub(crate) stats: Arc<Stats>,
    /// This cache_key's invalidation state, in the backend.
    pub(crate) namespace: Arc<Namespace>,
    /// How old a slot may be, and the clock that says.
    pub(crate) freshness: Freshness,
    /// Writes and events that name a row drop only the slots it can
    /// change, where the backend can (see [`RowChange`]).
    pub(crate) row_invalidation: bool,
}

impl Shared {
    pub(crate) fn new(cache: Arc<dyn Cache>, keys: SlotKeys) -> Self {
        let fenced: Arc<dyn Cache> = match cache.generations() {
            Some(_) => cache.clone(),
            None => Arc::new(LayerFenced::new(cache.clone())),
        };
        let namespace = match fenced.generations() {
            Some(generations) => generations.namespace(keys.namespace()),
            // `LayerFenced` always has them; a backend that answers `Some`
            // once and `None` later is given a private namespace.
            None => super::Generations::new().namespace(keys.namespace()),
        };
        Self {
            cache,
            fenced,
            keys,
            stats: Arc::new(Stats::new()),
            namespace,
            freshness: Freshness::default(),
            row_invalidation: false,
        }
    }

    /// The same layer state (backend, namespace, counters) under another
    /// freshness policy.
    pub(crate) fn with_freshness(&self, freshness: Freshness) -> Self {
        Self {
            cache: self.cache.clone(),
            fenced: self.fenced.clone(),
            keys: self.keys.clone(),
            stats: self.stats.clone(),
            namespace: self.namespace.clone(),
            freshness,
            row_invalidation: self.row_invalidation,
        }
    }

    /// The same layer state with row-level invalidation on (it turns the
    /// namespace's row index on, if the backend can drop rows).
    pub(crate) fn with_row_invalidation(&self) -> Self {
        if self.fenced.drops_rows() {
            self.namespace.enable_row_index();
        }
        Self {
            row_invalidation: true,
            ..self.with_freshness(self.freshness.clone())
        }
    }

    /// How `slot` stands against the freshness policy now.
    fn age(&self, slot: &CachedSlot) -> Age {
        if !self.freshness.ages_slots() {
            return Age::Fresh;
        }
        self.freshness.judge(slot, self.namespace.stale_before())
    }

    /// Mark every slot filled so far as stale (see
    /// [`Freshness`](super::Freshness#stale-marks)).
    pub(crate) fn mark_stale(&self) {
        self.namespace.mark_stale(self.freshness.now());
        // Slots that may miss changes nobody reported: the row index can no
        // longer vouch that a slot without a written row is current, so the
        // next row-level change drops the whole cache_key (if anything was
        // ever stored: an empty namespace has no such slot).
        if self.namespace.fills() > 0 {
            self.namespace.stored_unrecorded();
        }
    }

    /// Drop every slot of this cache_key. The backend moves the namespace's
    /// generation first (fencing every fill in flight). If it fails, the
    /// namespace is left unclean (by the backend, and here again, in case a
    /// backend does not): reads bypass it until an invalidation started
    /// after this one succeeds.
    pub(crate) async fn invalidate(&self) -> vantage_core::Result<()> {
        let prefix = self.keys.prefix();
        let outcome = self
            .fenced
            .invalidate_prefix(prefix)
            .instrument(tracing::debug_span!("cache.invalidate_prefix", prefix))
            .await;
        match &outcome {
            Ok(()) => self.stats.invalidated(),
            Err(_) => self.namespace.poison(),
        }
        outcome
    }

    /// Drop what `change` can make wrong: with row-level invalidation on
    /// and a backend that drops rows, the slots [`RowChange`] says (or the
    /// whole cache_key, if the backend's index cannot tell); otherwise, or
    /// without a change (`delete_all`, a bare `Changed` event), the whole
    /// cache_key. Failures leave the namespace unclean, as
    /// [`Shared::invalidate`] does.
    pub(crate) async fn invalidate_change(
        &self,
        change: Option<&RowChange>,
    ) -> vantage_core::Result<()> {
        let Some(change) = change.filter(|_| self.row_invalidation && self.fenced.drops_rows())
        else {
            return self.invalidate().await;
        };
        let outcome = self
            .fenced
            .invalidate_rows(&self.namespace, change)
            .instrument(tracing::debug_span!(
                "cache.invalidate_rows",
                change = change.kind(),
                id = change.id()
            ))
            .await;
        match &outcome {
            Ok(()) => self.stats.rows_invalidated(),
            Err(_) => self.namespace.poison(),
        }
        outcome
    }

    /// Whether the backend can be trusted for reads: clean, or the retried
    /// invalidation now succeeded.
    async fn usable(&self) -> bool {
        if !self.namespace.is_unclean() {
            return true;
        }
        match self.invalidate().await {
            Ok(()) if !self.namespace.is_unclean() => {
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
/// Errors of the inner service pass through (as [`BoxError`]s); a master read
/// shared by several readers gives each a
/// [`SharedError`](super::error::SharedError) around the original. See the
/// [module docs](super) for what is cached and what is guaranteed.
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

    /// The cache backend, as given to the layer.
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

impl<S> Service<Request> for CacheService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let shared = &self.shared;
        let slot = match &request {
            Request::List(view) if view.is_cacheable() => {
                Some((SlotKind::Rows, shared.keys.list(view)))
            }
            Request::Get { view, id } if view.is_cacheable() => {
                Some((SlotKind::Row, shared.keys.id(view, id)))
            }
            Request::Count(view) if view.is_cacheable() => {
                Some((SlotKind::Count, shared.keys.count(view)))
            }
            Request::Write(_) => {
                let inner = self.take_inner();
                return ResponseFuture::boxed(write_through(inner, self.shared.clone(), request));
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
        let Some((kind, key)) = slot else {
            self.shared.stats.master_read();
            let inner = self.take_inner();
            return ResponseFuture::boxed(inner.oneshot(request).map(|r| r.map_err(Into::into)));
        };

        // The hot path: a backend that answers from memory serves a hit here,
        // without a task, a box or the inner service.
        let namespace = &shared.namespace;
        let ticket = namespace.ticket();
        let fills_seen = namespace.fills();
        if !namespace.is_unclean() {
            let next = match shared.fenced.peek(&key, namespace) {
                Peek::Hit(slot) if slot.value.kind() == kind => match shared.age(&slot) {
                    Age::Fresh => return ResponseFuture::ready(Ok(hit(shared, &key, slot.value))),
                    // Its refresh already running (the usual case for a hot
                    // slot): just the stale hit, as cheap as a hit.
                    Age::Stale if namespace.refreshing(&key, ticket.generation()) => {
                        return ResponseFuture::ready(Ok(stale_hit(shared, &key, slot.value)));
                    }
                    Age::Stale => Next::Refresh(stale_hit(shared, &key, slot.value)),
                    Age::Expired => {
                        expired(shared, &key);
                        Next::Miss
                    }
                },
                Peek::Hit(_) => {
                    wrong_shape(shared, &key);
                    Next::Miss
                }
                Peek::Miss => {
                    tracing::debug!(
                        cache_key = shared.keys.cache_key(),
                        slot = %key,
                        outcome = "miss"
                    );
                    Next::Miss
                }
                Peek::Unknown => Next::LookUp,
            };
            let inner = self.take_inner();
            let read = Read {
                shared: self.shared.clone(),
                request,
                kind,
                key,
                ticket,
                fills_seen,
            };
            return match next {
                Next::Refresh(response) => {
                    read.refresh(inner);
                    ResponseFuture::ready(Ok(response))
                }
                Next::LookUp => ResponseFuture::boxed(read.look_up(inner)),
                Next::Miss => ResponseFuture::boxed(read.miss(inner)),
            };
        }
        let inner = self.take_inner();
        ResponseFuture::boxed(bypass_unclean(inner, self.shared.clone(), request, key))
    }
}

impl<S: Clone> CacheService<S> {
    /// The service that was driven to readiness, leaving a clone behind.
    fn take_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

/// What a read that the memory peek did not answer as fresh does next.
enum Next {
    /// Answer the stale slot now; refresh it in the background.
    Refresh(Response),
    /// Ask the backend (one trip).
    LookUp,
    /// Join or start the slot's master read.
    Miss,
}

/// Count and log a hit; the response shares the slot's rows.
fn hit(shared: &Shared, key: &str, value: SlotValue) -> Response {
    shared.stats.hit();
    tracing::debug!(cache_key = shared.keys.cache_key(), slot = %key, outcome = "hit");
    value.into_response()
}

/// Count and log a stale hit (it is a hit too); the caller starts its
/// refresh.
fn stale_hit(shared: &Shared, key: &str, value: SlotValue) -> Response {
    shared.stats.hit();
    shared.stats.stale_hit();
    tracing::debug!(cache_key = shared.keys.cache_key(), slot = %key, outcome = "stale");
    value.into_response()
}

fn expired(shared: &Shared, key: &str) {
    tracing::debug!(
        cache_key = shared.keys.cache_key(),
        slot = %key,
        outcome = "miss",
        "cached slot expired"
    );
}

fn wrong_shape(shared: &Shared, key: &str) {
    tracing::warn!(
        cache_key = shared.keys.cache_key(),
        slot = %key,
        outcome = "miss",
        "cached slot has the wrong shape; reading the master"
    );
}

/// A failed invalidation left the namespace unclean: retry it, and while it
/// fails read the master without the cache.
async fn bypass_unclean<S>(
    inner: S,
    shared: Arc<Shared>,
    request: Request,
    key: String,
) -> Result<Response, BoxError>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    if shared.usable().await {
        // Clean again: an ordinary read.
        let namespace = &shared.namespace;
        let read = Read {
            ticket: namespace.ticket(),
            fills_seen: namespace.fills(),
            shared: shared.clone(),
            request,
            kind: SlotKind::of_key(&key),
            key,
        };
        return read.look_up(inner).await;
    }
    tracing::warn!(
        cache_key = shared.keys.cache_key(),
        slot = %key,
        outcome = "bypass",
        "cache invalidation is failing; reading the master without the cache"
    );
    shared.stats.master_read();
    inner.oneshot(request).await.map_err(Into::into)
}

/// One cacheable read that the backend could not answer from memory.
struct Read {
    shared: Arc<Shared>,
    request: Request,
    kind: SlotKind,
    key: String,
    /// Where invalidations stood before the lookup: fences the fill.
    ticket: Ticket,
    /// Fills stored in the namespace before the lookup.
    fills_seen: u64,
}

impl Read {
    /// One trip to the backend; a hit answers, anything else is a miss.
    async fn look_up<S>(self, inner: S) -> Result<Response, BoxError>
    where
        S: Service<Request, Response = Response> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let mut this = self;
        let mut ticket = this.ticket;
        let shared = this.shared.clone();
        let cache_key = shared.keys.cache_key();
        let key = this.key.clone();
        let key = &key;
        let lookup = shared
            .fenced
            .lookup(key, &shared.namespace, &mut ticket)
            .instrument(tracing::debug_span!("cache.lookup", slot = %key))
            .await;
        this.ticket = ticket;
        match lookup {
            Ok(Some(slot)) if slot.value.kind() == this.kind => match shared.age(&slot) {
                Age::Fresh => return Ok(hit(&shared, key, slot.value)),
                Age::Stale => {
                    let response = stale_hit(&shared, key, slot.value);
                    this.refresh(inner);
                    return Ok(response);
                }
                Age::Expired => expired(&shared, key),
            },
            Ok(Some(_)) => wrong_shape(&shared, key),
            Ok(None) => tracing::debug!(cache_key, slot = %key, outcome = "miss"),
            Err(error) => tracing::warn!(
                cache_key,
                slot = %key,
                outcome = "miss",
                %error,
                "cache lookup failed; reading the master"
            ),
        }
        this.miss(inner).await
    }

    /// Join the slot's flight at this generation (and backend token), or
    /// start it.
    async fn miss<S>(self, inner: S) -> Result<Response, BoxError>
    where
        S: Service<Request, Response = Response> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.shared.stats.miss();
        let flight = self.join_or_start(inner, false);
        flight.await.map_err(|e| Box::new(e) as BoxError)
    }

    /// Refresh a slot served stale, in the background: one master read on a
    /// task of its own, unless a read of the slot is in flight already
    /// (which refreshes it). Fenced like any fill.
    fn refresh<S>(self, inner: S)
    where
        S: Service<Request, Response = Response> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        // Dropping the flight does not cancel it: it runs on its own task.
        drop(self.join_or_start(inner, true));
    }

    /// The slot's flight at this generation (and backend token): the one in
    /// progress, or a new one started on a task of its own. A refresh joins
    /// nothing and counts nothing if one is in progress.
    fn join_or_start<S>(self, inner: S, refresh: bool) -> Flight
    where
        S: Service<Request, Response = Response> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let shared = self.shared.clone();
        // The token too: a shared backend (Redis) records its own generation
        // there, which invalidations in other processes move.
        let flight_key = (
            self.key.clone(),
            self.ticket.generation(),
            self.ticket.token(),
        );
        let flight: Flight = {
            let mut flights = shared
                .namespace
                .flights
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match flights.get(&flight_key) {
                Some(flight) if refresh => {
                    drop(inner);
                    flight.clone()
                }
                Some(flight) => {
                    // Not needed: let go of whatever its readiness holds (a
                    // concurrency limit's permit) before waiting.
                    drop(inner);
                    shared.stats.coalesced();
                    tracing::debug!(
                        cache_key = shared.keys.cache_key(),
                        slot = %self.key,
                        outcome = "coalesced"
                    );
                    flight
                }
                None => {
                    if refresh {
                        shared.stats.refresh_started();
                        tracing::debug!(
                            cache_key = shared.keys.cache_key(),
                            slot = %self.key,
                            outcome = "refresh"
                        );
                    }
                    // On a task of its own, so that a waiter giving up does
                    // not cancel it for the others; in the span of the read
                    // that started it.
                    let task = tokio::spawn(
                        self.fetch_and_fill(inner, flight_key.clone(), refresh)
                            .instrument(tracing::Span::current()),
                    );
                    let flight: Flight = async move {
                        match task.await {
                            Ok(result) => result,
                            Err(join) => Err(SharedError::new(Box::new(ReadAborted::new(join)))),
                        }
                    }
                    .boxed()
                    .shared();
                    flights.insert(flight_key, flight.clone());
                    flight
                }
            }
        };
        flight
    }

    /// The master read and its fill (the flight's task).
    async fn fetch_and_fill<S>(self, inner: S, flight_key: FlightKey, refresh: bool) -> FlightResult
    where
        S: Service<Request, Response = Response> + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let shared = self.shared.clone();
        let result = match self.late_hit().await {
            Some(response) => Ok(response),
            None => {
                shared.stats.master_read();
                // The fill is stamped with the time the read started: the
                // answer is no younger than that.
                let started_at = shared.freshness.now();
                let result = inner
                    .oneshot(self.request.clone())
                    .await
                    .map_err(|e| SharedError::new(e.into()));
                match &result {
                    Ok(response) => self.fill(response, started_at).await,
                    Err(error) if refresh => {
                        shared.stats.refresh_failed();
                        tracing::warn!(
                            cache_key = shared.keys.cache_key(),
                            slot = %self.key,
                            error = %error,
                            "refreshing a stale slot failed; it keeps serving within its window"
                        );
                    }
                    Err(_) => {}
                }
                result
            }
        };
        // Later reads start a new flight (and find the slot filled).
        shared
            .namespace
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&flight_key);
        result
    }

    /// A slot filled since this read looked, if any: a read that missed just
    /// before an earlier flight's fill landed (and looked for a flight just
    /// after it left) serves that fill instead of asking the master again.
    /// Any slot the backend holds is as good as one the lookup would have
    /// found: fills are fenced, invalidations drop slots.
    async fn late_hit(&self) -> Option<Response> {
        let shared = &self.shared;
        let namespace = &shared.namespace;
        if namespace.fills() == self.fills_seen || !shared.fenced.stores() || namespace.is_unclean()
        {
            return None;
        }
        let slot = match shared.fenced.peek(&self.key, namespace) {
            Peek::Hit(slot) => slot,
            Peek::Miss => return None,
            Peek::Unknown => shared
                .fenced
                .lookup(&self.key, namespace, &mut namespace.ticket())
                .instrument(tracing::debug_span!("cache.lookup", slot = %self.key))
                .await
                .ok()??,
        };
        // Only a fresh slot saves the master read (a refresh of a stale one
        // must not answer with it).
        if slot.value.kind() != self.kind || shared.age(&slot) != Age::Fresh {
            return None;
        }
        tracing::debug!(
            cache_key = shared.keys.cache_key(),
            slot = %self.key,
            outcome = "hit",
            "filled by an earlier flight"
        );
        Some(slot.value.into_response())
    }

    /// Store the master's answer, unless an invalidation started since the
    /// ticket was taken.
    async fn fill(&self, response: &Response, fetched_at: std::time::SystemTime) {
        let shared = &self.shared;
        // A backend that stores nothing (`NoCache`) would drop it anyway.
        if !shared.fenced.stores() {
            return;
        }
        let Some(value) = SlotValue::from_response(self.kind, response) else {
            return;
        };
        let cache_key = shared.keys.cache_key();
        let key = &self.key;
        let namespace = &shared.namespace;
        if !self.ticket.is_current(namespace) {
            tracing::debug!(cache_key, slot = %key, "invalidated while reading; not filling");
            return;
        }
        if shared.fenced.drops_rows() {
            // Before the store: see `Namespace::start_row_drop`.
            let within = split_key(key).1;
            match (&value, &self.request) {
                (SlotValue::Rows(rows), _) => {
                    namespace.record_fill(within, rows.keys().map(String::as_str))
                }
                (_, Request::Get { id, .. }) => {
                    namespace.record_fill(within, std::iter::once(id.as_str()))
                }
                _ => namespace.record_fill(within, std::iter::empty()),
            }
        }
        let stored = shared
            .fenced
            .fill(
                key,
                namespace,
                self.ticket,
                CachedSlot { value, fetched_at },
            )
            .instrument(tracing::debug_span!("cache.fill", slot = %key))
            .await;
        match stored {
            Ok(true) => {
                namespace.filled();
                tracing::debug!(cache_key, slot = %key, outcome = "populated");
            }
            Ok(false) => {
                tracing::debug!(cache_key, slot = %key, "invalidated while reading; not filling")
            }
            Err(error) => tracing::warn!(
                cache_key,
                slot = %key,
                %error,
                "cache store failed; served the master's answer"
            ),
        }
    }
}

async fn write_through<S>(
    inner: S,
    shared: Arc<Shared>,
    request: Request,
) -> Result<Response, BoxError>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    // If the write never settles (it panics, or its future is dropped while
    // the master may already have applied it), the cache may be stale: the
    // guard poisons the namespace so reads bypass it until an invalidation
    // succeeds.
    let guard = Unsettled(&shared);
    let span = InProgress::new(&shared.namespace);
    // What the write will have changed, noted before it moves (without its
    // record): only with row-level invalidation on.
    let planned = match &request {
        Request::Write(write) if shared.row_invalidation => Some(Planned::of(write)),
        _ => None,
    };
    let outcome = inner.oneshot(request).await.map_err(Into::into);
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
    // A row-level drop only for a write that overlapped no other: another
    // write's change may already be at the master with its invalidation
    // still to come, and slots this one keeps may hold what it changed.
    let change = planned
        .and_then(|planned| planned.after(&response))
        .filter(|_| shared.namespace.write_alone(&span.span));
    let outcome = shared.invalidate_change(change.as_ref()).await;
    drop(span);
    if let Err(error) = outcome {
        tracing::warn!(
            cache_key = shared.keys.cache_key(),
            %error,
            "write succeeded but invalidating the cache failed; \
             reads bypass the cache until an invalidation succeeds"
        );
    } else {
        tracing::debug!(
            cache_key = shared.keys.cache_key(),
            outcome = "invalidated",
            rows = change.as_ref().map(RowChange::id)
        );
    }
    Ok(response)
}

/// The row a write changes, as far as the request says it.
enum Planned {
    Row(RowChange),
    /// `insert_return_id`: the response names the row.
    ReturnedId,
    /// `delete_all`.
    Rows,
}

impl Planned {
    fn of(write: &WriteRequest) -> Self {
        match write {
            WriteRequest::Patch { id, .. } => Planned::Row(RowChange::Updated(id.clone())),
            WriteRequest::Insert { id, .. } | WriteRequest::Replace { id, .. } => {
                Planned::Row(RowChange::Inserted(id.clone()))
            }
            WriteRequest::Delete { id } => Planned::Row(RowChange::Deleted(id.clone())),
            WriteRequest::InsertReturnId { .. } => Planned::ReturnedId,
            WriteRequest::DeleteAll { .. } => Planned::Rows,
        }
    }

    fn after(self, response: &Response) -> Option<RowChange> {
        match (self, response) {
            (Planned::Row(change), _) => Some(change),
            (Planned::ReturnedId, Response::Id(id)) => Some(RowChange::Inserted(id.clone())),
            _ => None,
        }
    }
}

/// A write in progress in its namespace, until dropped.
struct InProgress<'a> {
    namespace: &'a Namespace,
    span: super::generations::WriteSpan,
}

impl<'a> InProgress<'a> {
    fn new(namespace: &'a Namespace) -> Self {
        Self {
            span: namespace.write_started(),
            namespace,
        }
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.namespace.write_ended();
    }
}

/// Poisons the namespace if dropped: armed while a write is in flight.
struct Unsettled<'a>(&'a Shared);

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        self.0.namespace.poison();
        self.0.stats.write_failed();
        tracing::warn!(
            cache_key = self.0.keys.cache_key(),
            "a write ended without an answer (panic or cancellation); \
             reads bypass the cache until an invalidation succeeds"
        );
    }
}
