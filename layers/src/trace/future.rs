//! The future [`Tracing`](super::Tracing) answers with.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tracing::instrument::Instrumented;
use tracing::Span;

use crate::request::Response;

pin_project! {
    /// The inner service's future, run inside the request's span. When it
    /// completes it logs, in that span, the `ERROR` of a failed request or
    /// the `TRACE` details of a successful one.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        op: &'static str,
        // The cache_key and id an `ERROR` names; `None` where no `ERROR`
        // can be logged.
        failure: Option<(Arc<str>, Option<String>)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: Instrumented<F>,
        op: &'static str,
        failure: Option<(Arc<str>, Option<String>)>,
    ) -> Self {
        Self { inner, op, failure }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
    E: fmt::Display,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll(cx));
        let span = this.inner.span();
        let _entered = span.enter();
        match &result {
            Ok(response) => on_success(span, response),
            // What the caller sees as `Err`: the one `ERROR` of the request.
            Err(error) => {
                if let Some((cache_key, id)) = this.failure.as_ref() {
                    tracing::error!(
                        cache_key = &**cache_key,
                        op = *this.op,
                        id = id.as_deref(),
                        outcome = "failed",
                        %error,
                        "request failed"
                    )
                }
            }
        }
        Poll::Ready(result)
    }
}

/// Row counts of reads, record bodies of writes: `TRACE` only.
fn on_success(span: &Span, response: &Response) {
    match response {
        Response::Rows(rows) => tracing::trace!(rows = rows.len(), "rows read"),
        Response::Row(row) => tracing::trace!(rows = usize::from(row.is_some()), "row read"),
        Response::Some(row) => tracing::trace!(rows = usize::from(row.is_some()), "row read"),
        Response::Count(count) => tracing::trace!(count, "rows counted"),
        Response::Record(record) => {
            tracing::trace!(fields = record.len(), record = ?record, "record stored")
        }
        Response::Done => tracing::trace!("write done"),
        Response::Id(id) => {
            // `insert_return_id` learns its id only now.
            span.record("id", id.as_str());
            tracing::trace!(id = id.as_str(), "record stored")
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", self.inner.span())
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}
