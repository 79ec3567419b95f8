//! Serving UI pages from the master's own pages (multi-page glue).
//!
//! A UI scrolls at its own page size; the master (and so the cache under
//! it) is read at the master's. [`MasterPagesLayer`] turns a paginated
//! [`Request::List`] whose page size differs from the master's into reads of
//! the master pages it spans, passes each one down (so a cache below keeps
//! one slot per master page, with its single flight), and answers the rows
//! the UI page asked for:
//!
//! - a UI page larger than a master page is assembled from every master page
//!   it touches, read concurrently (so the last UI page may read a master
//!   page past the end: an empty page, cached like any other);
//! - a UI page smaller than a master page is cut from the master page that
//!   holds it (or the two it straddles).
//!
//! Scrolling at 25 per page over a master page size of 10 reads master pages
//! 1-3, then 3-5 (3 is a hit), and so on: each master page is one master
//! read. Requests at the master's page size, unpaginated lists, opaque views
//! and every other request pass through untouched.
//!
//! # Consistency
//!
//! Each master page is one read with the guarantees of the layer below it:
//! never older than the last write acknowledged, or event processed, before
//! the UI page's read started. An assembled page is made of several, so the
//! layer also checks, through the cache layer's invalidation state
//! ([`MasterPagesLayer::fenced_by`]), that no invalidation (an acknowledged
//! write, a processed event, through any stack sharing the backend) fell
//! between the first of them and the last; if one did, it reads them again
//! (up to [`ATTEMPTS`] times), and after that sends the UI page itself down
//! as one read.
//!
//! What it cannot rule out is a change *in flight*: a write the master has
//! applied but not yet answered, or a change behind the cache's back whose
//! event is not yet processed. Like a single read that overlaps it, each
//! master page may or may not show it, so a page assembled while it lands
//! can show it on one master page and not on the next: with an insert or a
//! delete, a row at the seam is then missing, or shown once where the two
//! master pages both hold it (the page is one row short), exactly as two
//! reads of an offset-paginated master would. The next read after it is
//! acknowledged is whole again. The model test checks precisely this: each
//! master page of an assembled page is at one of two adjacent versions.
//! Without a fence the pages are assembled as read.
//!
//! **Backends shared by processes.** The fence reads the generation of the
//! backend instance in this process and, for a backend shared by processes,
//! the generation in the shared store too
//! ([`Cache::shared_generation`](crate::Cache::shared_generation):
//! `RedisCache` and `TieredCache` read it from Redis, one trip before and
//! one after the master pages), so invalidations made through another
//! process count as well. If the shared store cannot be read, the check
//! fails and the page is read again (at last as one read).
//!
//! An assembled page is a new set of rows (copied from the master pages, which
//! stay shared in the cache).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{self, BoxFuture, FutureExt};
use tower::{BoxError, Layer, Service, ServiceExt};
use vantage_table::pagination::Pagination;

use crate::cache::{CacheLayer, Invalidator};
use crate::request::{Request, Response, Rows, View};

/// How many times an assembled page is read again when an invalidation
/// falls between its master pages, before the UI page is read as one.
pub const ATTEMPTS: usize = 3;

/// Serves paginated lists at any page size from reads at the master's page
/// size. See the [module docs](self).
#[derive(Clone, Default)]
pub struct MasterPagesLayer {
    master_ipp: Option<i64>,
    fence: Option<Invalidator>,
}

impl MasterPagesLayer {
    /// Read the master `master_ipp` rows per page. A page size below 1 is
    /// taken as 1 (as `Pagination` does).
    pub fn new(master_ipp: i64) -> Self {
        Self::optional(Some(master_ipp))
    }

    /// Read the master at `master_ipp` rows per page if set; without one
    /// the services pass everything through.
    pub fn optional(master_ipp: Option<i64>) -> Self {
        Self {
            master_ipp: master_ipp.map(|ipp| ipp.max(1)),
            fence: None,
        }
    }

    /// Check assembled pages against `cache`'s invalidation state (the
    /// cache layer below this one): master pages read across an
    /// invalidation are read again.
    pub fn fenced_by(mut self, cache: &CacheLayer) -> Self {
        self.fence = Some(cache.invalidator());
        self
    }

    /// The master's page size, if set.
    pub fn master_ipp(&self) -> Option<i64> {
        self.master_ipp
    }
}

impl fmt::Debug for MasterPagesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterPagesLayer")
            .field("master_ipp", &self.master_ipp)
            .field("fenced", &self.fence.is_some())
            .finish()
    }
}

impl<S> Layer<S> for MasterPagesLayer {
    type Service = MasterPages<S>;

    fn layer(&self, inner: S) -> MasterPages<S> {
        MasterPages {
            inner,
            master_ipp: self.master_ipp,
            fence: self.fence.clone(),
        }
    }
}

/// The service [`MasterPagesLayer`] builds.
#[derive(Clone)]
pub struct MasterPages<S> {
    inner: S,
    master_ipp: Option<i64>,
    fence: Option<Invalidator>,
}

impl<S> MasterPages<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for MasterPages<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterPages")
            .field("master_ipp", &self.master_ipp)
            .field("inner", &self.inner)
            .finish()
    }
}

/// The rows `[start, end)` of the view, as master pages of `ipp` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: i64,
    end: i64,
    ipp: i64,
}

impl Span {
    /// What `ui` spans at master page size `ipp`, if it differs from it.
    fn of(ui: Pagination, ipp: i64) -> Option<Span> {
        if ui.get_ipp() == ipp {
            return None;
        }
        let start = ui.skip();
        Some(Span {
            start,
            end: start.saturating_add(ui.limit()),
            ipp,
        })
    }

    /// The master pages (1-based) holding rows `start..end`.
    fn pages(&self) -> std::ops::RangeInclusive<i64> {
        (self.start / self.ipp + 1)..=((self.end - 1) / self.ipp + 1)
    }

    /// The UI page's rows out of the master pages, in order.
    fn cut(&self, pages: &[Arc<Rows>]) -> Rows {
        let first_row = (self.start / self.ipp) * self.ipp;
        let skip = (self.start - first_row) as usize;
        let take = (self.end - self.start) as usize;
        pages
            .iter()
            .flat_map(|page| page.iter())
            .skip(skip)
            .take(take)
            .map(|(id, row)| (id.clone(), row.clone()))
            .collect()
    }
}

impl<S> Service<Request> for MasterPages<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let span = match (&request, self.master_ipp) {
            (Request::List(view), Some(ipp)) if view.is_cacheable() => {
                view.pagination().and_then(|ui| Span::of(ui, ipp))
            }
            _ => None,
        };
        // The service driven to readiness goes with the request; a clone
        // stays for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let Some(span) = span else {
            return inner
                .oneshot(request)
                .map(|r| r.map_err(Into::into))
                .boxed();
        };
        let Request::List(view) = request else {
            unreachable!("only lists have a span")
        };
        assemble(inner, view, span, self.fence.clone()).boxed()
    }
}

/// Read the master pages of `span` and cut the UI page from them, again if
/// an invalidation fell between them; at last read the UI page as one.
async fn assemble<S>(
    inner: S,
    view: View,
    span: Span,
    fence: Option<Invalidator>,
) -> Result<Response, BoxError>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let mut ready = Some(inner.clone());
    for _ in 0..ATTEMPTS {
        let before = match &fence {
            Some(fence) => Some(fence.fence().await),
            None => None,
        };
        if before == Some(None) {
            // The shared store's generation cannot be read: nothing could
            // be ruled out, however often the pages were read.
            break;
        }
        let reads = span.pages().map(|page| {
            let service = ready.take().unwrap_or_else(|| inner.clone());
            let page = view
                .clone()
                .with_pagination(Some(Pagination::new(page, span.ipp)));
            service
                .oneshot(Request::List(page))
                .map(|answer| answer.map_err(Into::<BoxError>::into))
        });
        let mut pages = Vec::new();
        for answer in future::join_all(reads).await {
            let rows = answer?.into_shared_rows().map_err(BoxError::from)?;
            pages.push(rows);
        }
        let after = match &fence {
            Some(fence) => Some(fence.fence().await),
            None => None,
        };
        if before == after {
            return Ok(Response::Rows(Arc::new(span.cut(&pages))));
        }
        tracing::debug!(
            pages = ?span.pages(),
            "invalidated while assembling a page from master pages; reading them again"
        );
    }
    tracing::debug!("invalidations kept overlapping the master pages; reading the page as one");
    inner.oneshot(Request::List(view)).await.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_types::Record;

    fn rows(ids: std::ops::Range<i64>) -> Arc<Rows> {
        Arc::new(
            ids.map(|i| (format!("r{i:03}"), Record::new()))
                .collect::<Rows>(),
        )
    }

    fn ids(rows: &Rows) -> Vec<String> {
        rows.keys().cloned().collect()
    }

    #[test]
    fn spans_cover_the_ui_page() {
        let span = Span::of(Pagination::new(2, 25), 10).unwrap();
        assert_eq!(span.pages(), 3..=5);
        let cut = span.cut(&[rows(20..30), rows(30..40), rows(40..50)]);
        assert_eq!(ids(&cut).first().unwrap(), "r025");
        assert_eq!(ids(&cut).last().unwrap(), "r049");
        assert_eq!(cut.len(), 25);

        // Smaller than a master page: inside one, or across two.
        let span = Span::of(Pagination::new(3, 4), 10).unwrap();
        assert_eq!(span.pages(), 1..=2);
        let cut = span.cut(&[rows(0..10), rows(10..20)]);
        assert_eq!(ids(&cut), ["r008", "r009", "r010", "r011"]);
        let span = Span::of(Pagination::new(2, 4), 10).unwrap();
        assert_eq!(span.pages(), 1..=1);

        // The master's own size passes through.
        assert_eq!(Span::of(Pagination::new(7, 10), 10), None);
    }

    #[test]
    fn short_last_pages_cut_short() {
        let span = Span::of(Pagination::new(2, 25), 10).unwrap();
        let cut = span.cut(&[rows(20..30), rows(30..33), rows(0..0)]);
        assert_eq!(cut.len(), 8);
        assert_eq!(ids(&cut).first().unwrap(), "r025");
    }
}
