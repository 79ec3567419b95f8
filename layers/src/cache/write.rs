//! The write path: a write goes to the inner service, then (if it
//! succeeded) invalidates, before it answers; a write that never settles
//! poisons the namespace.

use std::sync::Arc;

use tower::{BoxError, Service, ServiceExt};

use super::generations::{Namespace, WriteSpan};
use super::row_index::RowChange;
use super::shared::Shared;
use crate::request::{Request, Response, WriteRequest};

pub(super) async fn write_through<S>(
    inner: S,
    shared: Arc<Shared>,
    request: Request,
) -> Result<Response, BoxError>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    // If the write never settles (it panics, or its future is dropped while
    // the master may already have applied it), the cache may be stale: the
    // guard poisons the namespace so reads bypass it until an invalidation
    // succeeds.
    let guard = Unsettled(&shared);
    // Overlaps matter only where row-level drops can happen: a backend
    // that drops rows (every write on it counts, whichever layer it comes
    // through).
    let span = shared
        .fenced
        .drops_rows()
        .then(|| InProgress::new(&shared.namespace));
    // What the write will have changed, noted before it moves (without its
    // record): only with row-level invalidation on.
    let planned = match &request {
        Request::Write(write) if shared.row_invalidation => Some(Planned::of(write)),
        _ => None,
    };
    let outcome = inner.oneshot(request).await.map_err(Into::into);
    std::mem::forget(guard);
    let response = match outcome {
        Ok(response) => {
            shared.stats.write_ok();
            response
        }
        Err(error) => {
            shared.stats.write_failed();
            return Err(error);
        }
    };
    // A row-level drop only for a write that overlapped no other: another
    // write's change may already be at the master with its invalidation
    // still to come, and slots this one keeps may hold what it changed.
    let change = planned
        .and_then(|planned| planned.after(&response))
        .filter(|_| {
            span.as_ref()
                .is_some_and(|span| shared.namespace.write_alone(&span.span))
        });
    let outcome = shared.invalidate_change(change.as_ref()).await;
    drop(span);
    if let Err(error) = outcome {
        tracing::warn!(
            cache_key = shared.keys.cache_key(),
            %error,
            "write succeeded but invalidating the cache failed; \
             reads bypass the cache until an invalidation succeeds"
        );
    } else {
        tracing::debug!(
            cache_key = shared.keys.cache_key(),
            outcome = "invalidated",
            rows = change.as_ref().map(RowChange::id)
        );
    }
    Ok(response)
}

/// The row a write changes, as far as the request says it.
enum Planned {
    Row(RowChange),
    /// `insert_return_id`: the response names the row.
    ReturnedId,
    /// `delete_all`.
    Rows,
}

impl Planned {
    fn of(write: &WriteRequest) -> Self {
        match write {
            WriteRequest::Patch { id, .. } => Planned::Row(RowChange::Updated(id.clone())),
            WriteRequest::Insert { id, .. } | WriteRequest::Replace { id, .. } => {
                Planned::Row(RowChange::Inserted(id.clone()))
            }
            WriteRequest::Delete { id } => Planned::Row(RowChange::Deleted(id.clone())),
            WriteRequest::InsertReturnId { .. } => Planned::ReturnedId,
            WriteRequest::DeleteAll { .. } => Planned::Rows,
        }
    }

    fn after(self, response: &Response) -> Option<RowChange> {
        match (self, response) {
            (Planned::Row(change), _) => Some(change),
            (Planned::ReturnedId, Response::Id(id)) => Some(RowChange::Inserted(id.clone())),
            _ => None,
        }
    }
}

/// A write in progress in its namespace, until dropped.
struct InProgress<'a> {
    namespace: &'a Namespace,
    span: WriteSpan,
}

impl<'a> InProgress<'a> {
    fn new(namespace: &'a Namespace) -> Self {
        Self {
            span: namespace.write_started(),
            namespace,
        }
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.namespace.write_ended();
    }
}

/// Poisons the namespace if dropped: armed while a write is in flight.
struct Unsettled<'a>(&'a Shared);

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        self.0.namespace.poison();
        self.0.stats.write_failed();
        tracing::warn!(
            cache_key = self.0.keys.cache_key(),
            "a write ended without an answer (panic or cancellation); \
             reads bypass the cache until an invalidation succeeds"
        );
    }
}
