use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::status::EventStatus;
use super::task::Task;

/// The service [`InvalidateOnEventLayer`](super::InvalidateOnEventLayer)
/// builds: requests pass straight through to the inner service; holding it
/// keeps the layer's event task running.
///
/// The response future is the inner service's, unchanged.
pub struct InvalidateOnEvent<S> {
    inner: S,
    task: Arc<Task>,
}

impl<S> InvalidateOnEvent<S> {
    pub(crate) fn new(inner: S, task: Arc<Task>) -> Self {
        Self { inner, task }
    }

    /// Watch the event task: subscriptions, events handled, whether it ended.
    pub fn status(&self) -> EventStatus {
        self.task.status()
    }

    /// The cache_key the events invalidate.
    pub fn cache_key(&self) -> &str {
        self.task.cache_key()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one (which may end the event task:
    /// see [the module docs](super)).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for InvalidateOnEvent<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            task: self.task.clone(),
        }
    }
}

impl<S, R> Service<R> for InvalidateOnEvent<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // Built outside a runtime? Then the task starts with the first request.
        self.task.start();
        self.inner.call(request)
    }
}

impl<S: fmt::Debug> fmt::Debug for InvalidateOnEvent<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidateOnEvent")
            .field("task", &self.task)
            .field("inner", &self.inner)
            .finish()
    }
}
