use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;
use tracing::level_filters::LevelFilter;
use tracing::{Instrument as _, Level, Span};

use super::future::ResponseFuture;
use crate::request::{Request, Response, WriteRequest};

/// The service [`TracingLayer`](super::TracingLayer) builds: each request
/// runs in a `read` or `write` span; an `Err` answer is logged once at
/// `ERROR`. See the [module docs](super).
#[derive(Clone)]
pub struct Tracing<S> {
    inner: S,
    cache_key: Arc<str>,
}

impl<S> Tracing<S> {
    pub(crate) fn new(inner: S, cache_key: Arc<str>) -> Self {
        Self { inner, cache_key }
    }

    /// The cache_key spans are tagged with.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
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

impl<S: fmt::Debug> fmt::Debug for Tracing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("cache_key", &self.cache_key)
            .field("inner", &self.inner)
            .finish()
    }
}

/// The request's span: `read` or `write`, with its structured fields.
fn span_for(cache_key: &str, request: &Request) -> Span {
    match request {
        Request::Write(write) => {
            tracing::debug_span!("write", cache_key, op = write.op(), id = write.id())
        }
        read => {
            let pagination = read.view().and_then(|view| view.pagination());
            let id = match read {
                Request::Get { id, .. } => Some(id.as_str()),
                _ => None,
            };
            tracing::debug_span!(
                "read",
                cache_key,
                op = read.op(),
                page = pagination.map(|p| p.get_page()),
                ipp = pagination.map(|p| p.get_ipp()),
                id,
            )
        }
    }
}

/// A write's record body, at `TRACE` only.
fn trace_body(write: &WriteRequest) {
    match write {
        WriteRequest::Insert { record, .. }
        | WriteRequest::Replace { record, .. }
        | WriteRequest::InsertReturnId { record } => {
            tracing::trace!(fields = record.len(), record = ?record, "write body")
        }
        WriteRequest::Patch { partial, .. } => {
            tracing::trace!(fields = partial.len(), record = ?partial, "write body")
        }
        WriteRequest::Delete { .. } | WriteRequest::DeleteAll { .. } => {}
    }
}

impl<S> Service<Request> for Tracing<S>
where
    S: Service<Request, Response = Response>,
    S::Error: fmt::Display,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let span = span_for(&self.cache_key, &request);
        let op = request.op();
        // The failure's `ERROR` names the request itself (the span may be
        // disabled where errors are not): keep its fields only if an
        // `ERROR` can be logged at all.
        let failure = (LevelFilter::current() >= Level::ERROR).then(|| {
            let id = match &request {
                Request::Write(write) => write.id().map(str::to_owned),
                Request::Get { id, .. } => Some(id.clone()),
                _ => None,
            };
            (self.cache_key.clone(), id)
        });
        let future = {
            let _entered = span.enter();
            if let Request::Write(write) = &request {
                trace_body(write);
            }
            self.inner.call(request)
        };
        ResponseFuture::new(future.instrument(span), op, failure)
    }
}
