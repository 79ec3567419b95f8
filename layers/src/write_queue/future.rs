//! Future types for the [`WriteQueue`](super::WriteQueue) middleware.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tower::BoxError;
use tower::Service;

use super::error;
use super::service::{Queue, WriteBuffer};
use crate::request::{Request, Response};

/// What the forwarding task hands the caller.
type Outcome = Result<Response, BoxError>;

pin_project! {
    /// The future a [`WriteQueue`](super::WriteQueue) call returns: a read
    /// running on the inner service, or a write waiting for room in the queue
    /// and then for its reply.
    ///
    /// Dropping it before the write entered the queue withdraws the write;
    /// dropping it afterwards does not: the write is still applied.
    pub struct ResponseFuture<S>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<Request>,
    {
        Read {
            #[pin]
            read: S::Future,
        },
        Enqueue {
            queue: Arc<Queue>,
            // The inner service, if the queue was not started when this write
            // was called: the first write starts it.
            init: Option<S>,
            buffer: Option<WriteBuffer>,
            request: Option<Request>,
            op: &'static str,
        },
        Wait {
            reply: oneshot::Receiver<Outcome>,
            op: &'static str,
        },
        // The queue refused the write when it was called.
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<Request>,
{
    pub(crate) fn read(read: S::Future) -> Self {
        Self {
            state: State::Read { read },
        }
    }

    /// A write, entering the queue now if there is room (so writes called
    /// one after another enter in the order they were called, whenever their
    /// futures are first polled), or else waiting for room in its future.
    /// Outside a tokio runtime nothing can start yet: the write enters on
    /// its first poll.
    pub(crate) fn write(queue: Arc<Queue>, mut init: Option<S>, request: Request) -> Self
    where
        S: Service<Request, Response = Response> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let op = request.op();
        if tokio::runtime::Handle::try_current().is_err() {
            return Self {
                state: State::Enqueue {
                    queue,
                    init,
                    buffer: None,
                    op,
                    request: Some(request),
                },
            };
        }
        let mut buffer = queue.buffer(&mut init).clone();
        // Reserve a place without a waker: a full queue registers this write
        // in the buffer's fair semaphore, so it keeps its turn.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let state = match buffer.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => enqueue(&mut buffer, request, op),
            Poll::Ready(Err(e)) => State::Failed {
                error: Some(error::from_buffer(op, e)),
            },
            Poll::Pending => State::Enqueue {
                queue,
                init: None,
                buffer: Some(buffer),
                op,
                request: Some(request),
            },
        };
        Self { state }
    }
}

/// Hand a write to a ready buffer. Accepted: from here on the write does not
/// depend on the caller's future. A task owns the buffer's reply channel (so
/// the worker never skips the write as abandoned) and forwards the outcome,
/// if anyone still listens.
fn enqueue<S>(buffer: &mut WriteBuffer, request: Request, op: &'static str) -> State<S>
where
    S: Service<Request>,
{
    tracing::debug!(op, id = request_id(&request), "write queued");
    let applied = buffer.call(request);
    let (tx, reply) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(applied.await);
    });
    State::Wait { reply, op }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Read { read } => return read.poll(cx).map_err(Into::into),
                StateProj::Enqueue {
                    queue,
                    init,
                    buffer,
                    request,
                    op,
                } => {
                    let op = *op;
                    let buffer = buffer.get_or_insert_with(|| queue.buffer(init).clone());
                    // Back-pressure: wait here, not accepted yet, while the
                    // queue is full.
                    if let Err(e) = ready!(buffer.poll_ready(cx)) {
                        return Poll::Ready(Err(error::from_buffer(op, e)));
                    }
                    let request = request.take().expect("polled after the write was queued");
                    let queued = enqueue(buffer, request, op);
                    this.state.set(queued);
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::Wait { reply, op } => {
                    return Poll::Ready(match ready!(Pin::new(reply).poll(cx)) {
                        Ok(Ok(response)) => Ok(response),
                        Ok(Err(e)) => Err(error::from_buffer(op, e)),
                        // The forwarding task was dropped unfinished: the
                        // runtime is shutting down.
                        Err(_) => Err(error::closed(op)),
                    });
                }
            }
        }
    }
}

fn request_id(request: &Request) -> Option<&str> {
    match request {
        Request::Write(w) => w.id(),
        _ => None,
    }
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Read { .. } => "read",
            State::Enqueue { .. } => "waiting for room in the queue",
            State::Wait { .. } => "queued",
            State::Failed { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
