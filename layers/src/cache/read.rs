//! The read path: what a hit, a stale hit and a miss log and count; the
//! bypass while the namespace is unclean; and, past the memory peek, one
//! trip to the backend, the slot's single-flight master read (or its
//! background refresh) and the fenced fill.

use std::sync::Arc;

use futures_util::future::FutureExt;
use tower::{BoxError, Service, ServiceExt};
use tracing::Instrument as _;

use super::backend::Peek;
use super::cached::{CachedSlot, SlotKind, SlotValue};
use super::error::{ReadAborted, SharedError};
use super::flight::{Flight, FlightKey, FlightResult};
use super::freshness::Age;
use super::generations::Ticket;
use super::shared::Shared;
use super::slot::split_key;
use crate::request::{Request, Response};

/// Count and log a hit; the response shares the slot's rows.
pub(super) fn hit(shared: &Shared, key: &str, value: SlotValue) -> Response {
    shared.stats.hit();
    tracing::debug!(cache_key = shared.keys.cache_key(), slot = %key, outcome = "hit");
    value.into_response()
}

/// Count and log a stale hit (it is a hit too); the caller starts its
/// refresh.
pub(super) fn stale_hit(shared: &Shared, key: &str, value: SlotValue) -> Response {
    shared.stats.hit();
    shared.stats.stale_hit();
    tracing::debug!(cache_key = shared.keys.cache_key(), slot = %key, outcome = "stale");
    value.into_response()
}

pub(super) fn expired(shared: &Shared, key: &str) {
    tracing::debug!(
        cache_key = shared.keys.cache_key(),
        slot = %key,
        outcome = "miss",
        "cached slot expired"
    );
}

pub(super) fn wrong_shape(shared: &Shared, key: &str) {
    tracing::warn!(
        cache_key = shared.keys.cache_key(),
        slot = %key,
        outcome = "miss",
        "cached slot has the wrong shape; reading the master"
    );
}

/// A failed invalidation left the namespace unclean: retry it, and while it
/// fails read the master without the cache.
pub(super) async fn bypass_unclean<S>(
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

/// Takes a flight out of its namespace's map when dropped: later reads then
/// start a new flight (and find the slot filled, if it was).
struct LeaveFlight {
    shared: Arc<Shared>,
    key: FlightKey,
}

impl Drop for LeaveFlight {
    fn drop(&mut self) {
        self.shared
            .namespace
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// One cacheable read that the backend could not answer from memory.
pub(super) struct Read {
    pub(super) shared: Arc<Shared>,
    pub(super) request: Request,
    pub(super) kind: SlotKind,
    pub(super) key: String,
    /// Where invalidations stood before the lookup: fences the fill.
    pub(super) ticket: Ticket,
    /// Fills stored in the namespace before the lookup.
    pub(super) fills_seen: u64,
}

impl Read {
    /// One trip to the backend; a hit answers, anything else is a miss.
    pub(super) async fn look_up<S>(self, inner: S) -> Result<Response, BoxError>
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
    pub(super) async fn miss<S>(self, inner: S) -> Result<Response, BoxError>
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
    pub(super) fn refresh<S>(self, inner: S)
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
                    // The entry leaves the map when the task ends, however
                    // it ends (a panic in the inner service, a runtime
                    // shutting down before it ran): a finished flight must
                    // never be joined.
                    let leave = LeaveFlight {
                        shared: shared.clone(),
                        key: flight_key.clone(),
                    };
                    let task = tokio::spawn(
                        async move {
                            let _leave = leave;
                            self.fetch_and_fill(inner, refresh).await
                        }
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
    async fn fetch_and_fill<S>(self, inner: S, refresh: bool) -> FlightResult
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
