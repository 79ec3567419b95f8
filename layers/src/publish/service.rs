use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;
use tracing::Instrument as _;

use super::future::ResponseFuture;
use super::{write_event, Shared};
use crate::request::{Request, Response};

/// The service [`PublishInvalidationsLayer`](super::PublishInvalidationsLayer)
/// builds: reads pass through; a write that succeeds is published before it
/// answers. Errors of the inner service pass through unchanged.
pub struct PublishInvalidations<S> {
    inner: S,
    shared: Option<Arc<Shared>>,
}

impl<S: Clone> Clone for PublishInvalidations<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> PublishInvalidations<S> {
    pub(crate) fn new(inner: S, shared: Option<Arc<Shared>>) -> Self {
        Self { inner, shared }
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

impl<S: fmt::Debug> fmt::Debug for PublishInvalidations<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishInvalidations")
            .field("cache_key", &self.shared.as_ref().map(|s| &s.cache_key))
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> Service<Request> for PublishInvalidations<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (Some(shared), Request::Write(write)) = (&self.shared, &request) else {
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let write = write.clone();
        let shared = shared.clone();
        let answer = self.inner.call(request);
        ResponseFuture::boxed(async move {
            let response = answer.await?;
            let event = write_event(&write, &response);
            let publish = shared.publisher.publish(&shared.cache_key, event.clone());
            let span = tracing::debug_span!("publish", cache_key = %shared.cache_key);
            match tokio::time::timeout(shared.timeout, publish.instrument(span)).await {
                Ok(Ok(())) => tracing::debug!(
                    cache_key = %shared.cache_key,
                    event = %event,
                    outcome = "published"
                ),
                Ok(Err(error)) => tracing::warn!(
                    cache_key = %shared.cache_key,
                    %error,
                    "publishing a write's invalidation failed; other processes learn of it \
                     only through their own safety nets"
                ),
                Err(_) => tracing::warn!(
                    cache_key = %shared.cache_key,
                    timeout_ms = shared.timeout.as_millis() as u64,
                    "publishing a write's invalidation timed out"
                ),
            }
            Ok(response)
        })
    }
}
