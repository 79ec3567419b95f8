//! [`CacheService`], the service a [`CacheLayer`](super::CacheLayer) builds:
//! the hot path of a read (one peek at the backend's memory), and the way to
//! the read path ([`read`](super::read)) or the write path
//! ([`write`](super::write)).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::FutureExt;
use tower::{BoxError, Service, ServiceExt};

use super::backend::{Cache, Peek};
use super::cached::SlotKind;
use super::freshness::Age;
use super::future::ResponseFuture;
use super::read::{bypass_unclean, expired, hit, stale_hit, wrong_shape, Read};
use super::shared::Shared;
use super::slot::SlotKeys;
use super::write::write_through;
use crate::request::{Request, Response};
use crate::stats::Stats;

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
