//! The service behind the queue's `Buffer`: applies one write at a time, each
//! on its own task.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::PollSemaphore;
use tower::BoxError;
use tower::{Service, ServiceExt};
use tracing::Instrument as _;

use super::error;
use crate::request::{Request, Response};

/// Applies writes one at a time, detached from whoever asked.
///
/// `call` spawns the write (the inner service's whole future, so a cache
/// layer's invalidation is part of it) on its own tokio task and hands back a
/// future that only waits for that task. The task holds the one permit of a
/// semaphore until the write has finished, and `poll_ready` is not ready
/// without that permit: the `Buffer` worker driving this service cannot take
/// the next write before the previous one is done.
pub(crate) struct Serial<S> {
    inner: S,
    semaphore: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
}

impl<S> Serial<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            semaphore: PollSemaphore::new(Arc::new(Semaphore::new(1))),
            permit: None,
        }
    }
}

impl<S> fmt::Debug for Serial<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serial")
            .field("in_flight", &self.permit.is_none())
            .finish_non_exhaustive()
    }
}

impl<S> Service<Request> for Serial<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Applied;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.permit.is_none() {
            // The semaphore is never closed, so this is always `Some`.
            self.permit = ready!(self.semaphore.poll_acquire(cx));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Applied {
        let permit = self
            .permit
            .take()
            .expect("Serial::call without poll_ready: the Buffer worker always polls first");
        let op = request.op();
        let id = match &request {
            Request::Write(write) => write.id().map(str::to_owned),
            _ => None,
        };
        // The inner service's readiness is awaited on the task too: a
        // readiness error is this write's error, not the queue's.
        let write = self.inner.clone().oneshot(request);
        // The Buffer worker runs this inside the caller's span, so the
        // worker's span is its child; the write's task keeps it, and with it
        // everything the write logs (its invalidation, its failure).
        let span = tracing::debug_span!("queue_worker", op, id = id.as_deref());
        let task = tokio::spawn(
            async move {
                let outcome = AssertUnwindSafe(write).catch_unwind().await;
                // The next write may start only once this one is over.
                drop(permit);
                match outcome {
                    Ok(Ok(response)) => {
                        let generated = match &response {
                            Response::Id(id) => Some(id.as_str()),
                            _ => None,
                        };
                        tracing::debug!(
                            op,
                            id = id.as_deref().or(generated),
                            "queued write drained and applied"
                        );
                        Ok(response)
                    }
                    Ok(Err(error)) => {
                        let error: BoxError = error.into();
                        tracing::debug!(
                            op,
                            id = id.as_deref(),
                            outcome = "failed",
                            %error,
                            "queued write rejected"
                        );
                        Err(error)
                    }
                    Err(payload) => {
                        let error = error::panicked(op, &*payload);
                        // A recovery: the queue goes on. The caller's `Err` is
                        // logged once, by the tracing layer, at ERROR.
                        tracing::warn!(
                            op,
                            id = id.as_deref(),
                            outcome = "failed",
                            %error,
                            "queued write panicked"
                        );
                        Err(error)
                    }
                }
            }
            .instrument(span),
        );
        Applied { task, op }
    }
}

/// The future [`Serial`] answers with: waits for the write's task.
///
/// Dropping it does not cancel the write (dropping a `JoinHandle` detaches).
#[derive(Debug)]
pub(crate) struct Applied {
    task: JoinHandle<Result<Response, BoxError>>,
    op: &'static str,
}

impl Future for Applied {
    type Output = Result<Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let op = self.op;
        match ready!(Pin::new(&mut self.task).poll(cx)) {
            Ok(result) => Poll::Ready(result),
            // The task catches panics itself, so this is a cancelled task:
            // its runtime is shutting down.
            Err(join) if join.is_panic() => {
                Poll::Ready(Err(error::panicked(op, &*join.into_panic())))
            }
            Err(_) => Poll::Ready(Err(error::closed(op))),
        }
    }
}
