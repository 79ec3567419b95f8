//! The future [`CacheService`](super::CacheService) answers with.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::BoxError;

use crate::request::Response;

/// A hit answered at once, or a read or write still running.
///
/// A hit served from memory is ready when the call returns: no task, no box.
pub struct ResponseFuture {
    state: State,
}

enum State {
    Ready(Option<Result<Response, BoxError>>),
    Running(BoxFuture<'static, Result<Response, BoxError>>),
}

impl ResponseFuture {
    pub(crate) fn ready(result: Result<Response, BoxError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    pub(crate) fn boxed(
        future: impl Future<Output = Result<Response, BoxError>> + Send + 'static,
    ) -> Self {
        Self {
            state: State::Running(Box::pin(future)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Ready(result) => Poll::Ready(
                result
                    .take()
                    .expect("cache ResponseFuture polled after it completed"),
            ),
            State::Running(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Running(_) => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
