use std::fmt;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tower::buffer::Buffer;
use tower::BoxError;
use tower::Service;

use super::future::ResponseFuture;
use super::serial::{Applied, Serial};
use crate::request::{Request, Response};

/// The queue's `Buffer`: writes in, one at a time to [`Serial`].
pub(crate) type WriteBuffer = Buffer<Request, Applied>;

/// The queue shared by every clone of one [`WriteQueue`].
pub(crate) struct Queue {
    pub(crate) bound: usize,
    /// Made by the first write (`Buffer::new` spawns its worker on tokio, so
    /// building a stack outside a runtime must not make it).
    pub(crate) buffer: OnceLock<WriteBuffer>,
}

impl Queue {
    /// The buffer, making it (around `init`) if this is the first write.
    pub(crate) fn buffer<S>(&self, init: &mut Option<S>) -> &WriteBuffer
    where
        S: Service<Request, Response = Response> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.buffer.get_or_init(|| {
            let inner = init
                .take()
                .expect("the first write's future carries the inner service");
            tracing::info!(bound = self.bound, "write queue started");
            Buffer::new(Serial::new(inner), self.bound)
        })
    }
}

/// The service [`WriteQueueLayer`](super::WriteQueueLayer) builds: writes go
/// through a bounded FIFO queue and are applied one at a time, reads go
/// straight to the inner service.
///
/// Clones share one queue. See the [module docs](super) for the guarantees.
pub struct WriteQueue<S> {
    inner: S,
    queue: Arc<Queue>,
}

impl<S: Clone> Clone for WriteQueue<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<S> WriteQueue<S> {
    /// Queue the writes to `inner`, at most `bound` waiting (see
    /// [`WriteQueueLayer::bound`](super::WriteQueueLayer::bound); 0 is taken
    /// as 1).
    pub fn new(inner: S, bound: usize) -> Self {
        Self {
            inner,
            queue: Arc::new(Queue {
                bound: bound.max(1),
                buffer: OnceLock::new(),
            }),
        }
    }

    /// How many accepted writes may wait in the queue.
    pub fn bound(&self) -> usize {
        self.queue.bound
    }

    /// The inner service (the one reads go to; writes go to a clone of it
    /// taken by the first write).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably. Changing it changes reads, and writes only
    /// if no write has been made yet.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one. Writes already accepted are
    /// still applied.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for WriteQueue<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteQueue")
            .field("bound", &self.queue.bound)
            .field("started", &self.queue.buffer.get().is_some())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> Service<Request> for WriteQueue<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    /// Ready when the inner service is (reads go straight to it, so a
    /// concurrency-limited or overloaded inner service shows here). A full
    /// queue does not make it pending: a write waits for room inside its
    /// future, so a full queue never holds up reads.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// A read is called on the inner service this readiness was reserved on.
    /// A write goes to the queue's worker, which waits for its own
    /// readiness; the reservation made by `poll_ready` is given back first
    /// (the ready inner service is swapped for a fresh clone and dropped),
    /// so that a concurrency limit's permit, say, is not held by a caller
    /// while the worker waits for it.
    fn call(&mut self, request: Request) -> Self::Future {
        if request.is_write() {
            let fresh = self.inner.clone();
            drop(std::mem::replace(&mut self.inner, fresh));
            let init = match self.queue.buffer.get() {
                Some(_) => None,
                None => Some(self.inner.clone()),
            };
            ResponseFuture::write(self.queue.clone(), init, request)
        } else {
            ResponseFuture::read(self.inner.call(request))
        }
    }
}
