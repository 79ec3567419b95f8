//! Future types for the [`Outbox`](super::Outbox) middleware.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::{BoxError, Service};

use crate::request::{Request, Response};

pin_project! {
    /// The future an [`Outbox`](super::Outbox) call returns: a read passed
    /// straight to the inner service (nothing pending), a read with the
    /// pending writes laid over it, or a write being stored.
    ///
    /// Dropping a write's future does not withdraw it once it started: the
    /// write is stored (and then applied) on a task of its own.
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
        Direct {
            #[pin]
            read: Oneshot<S, Request>,
        },
        Boxed {
            future: BoxFuture<'static, Result<Response, BoxError>>,
        },
    }
}

impl<S> ResponseFuture<S>
where
    S: Service<Request>,
{
    pub(crate) fn direct(read: Oneshot<S, Request>) -> Self {
        Self {
            state: State::Direct { read },
        }
    }

    pub(crate) fn boxed(future: BoxFuture<'static, Result<Response, BoxError>>) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<S> Future for ResponseFuture<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Direct { read } => read.poll(cx).map_err(Into::into),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<S> fmt::Debug for ResponseFuture<S>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Direct { .. } => "read",
            State::Boxed { .. } => "overlaid read or write",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
