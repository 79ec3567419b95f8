//! The future [`InvalidateOnEvent`](super::InvalidateOnEvent) answers with.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use pin_project_lite::pin_project;

pin_project! {
    /// The inner service's future, unchanged, once the event task has made
    /// its first subscription; before that (only the first requests of a
    /// stack), a future that waits for it and then calls a clone of the
    /// inner service.
    pub struct ResponseFuture<F, T, E> {
        #[pin]
        state: State<F, T, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T, E> {
        Direct {
            #[pin]
            inner: F,
        },
        AfterSubscription {
            deferred: BoxFuture<'static, Result<T, E>>,
        },
    }
}

impl<F, T, E> ResponseFuture<F, T, E> {
    pub(crate) fn direct(inner: F) -> Self {
        Self {
            state: State::Direct { inner },
        }
    }

    pub(crate) fn after_subscription(deferred: BoxFuture<'static, Result<T, E>>) -> Self {
        Self {
            state: State::AfterSubscription { deferred },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Direct { inner } => inner.poll(cx),
            StateProj::AfterSubscription { deferred } => deferred.as_mut().poll(cx),
        }
    }
}

impl<F, T, E> fmt::Debug for ResponseFuture<F, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Direct { .. } => "direct",
            State::AfterSubscription { .. } => "waiting for the first subscription",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
