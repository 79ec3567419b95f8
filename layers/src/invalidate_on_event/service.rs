use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use tower::{Service, ServiceExt};

use super::future::ResponseFuture;
use super::status::EventStatus;
use super::task::Task;

/// The service [`InvalidateOnEventLayer`](super::InvalidateOnEventLayer)
/// builds: requests pass straight through to the inner service; holding it
/// keeps the layer's event task running.
///
/// The first request starts the event task. Requests wait until its first
/// subscription is made (and its invalidation done), so that no read that
/// started before the stack listened fills the cache with rows older than a
/// change it never heard of; from then on the response future is the inner
/// service's, unchanged, with no box.
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

    /// Start the event task now, on the current tokio runtime, instead of
    /// with the first request. Does nothing if it runs already, or outside a
    /// runtime.
    pub fn start(&self) {
        self.task.start();
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
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        if self.task.has_subscribed() {
            return ResponseFuture::direct(self.inner.call(request));
        }
        // The first requests: start the task (on this runtime), wait for its
        // first subscription, then go on with a clone of the inner service.
        let task = self.task.clone();
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::after_subscription(
            async move {
                task.start();
                task.first_subscription().await;
                inner.oneshot(request).await
            }
            .boxed(),
        )
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
