use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{BoxError, Service, ServiceExt};

use super::core::Core;
use super::future::ResponseFuture;
use super::handle::OutboxHandle;
use super::overlay::Overlay;
use crate::request::{Request, Response};

/// The service [`OutboxLayer`](super::OutboxLayer) builds: writes are
/// accepted into the outbox file and answered locally, then applied to the
/// inner service in the background, in order; reads go to the inner service
/// and show the pending writes.
///
/// Clones share the outbox. See the [module docs](super) for the
/// guarantees.
pub struct Outbox<S> {
    inner: S,
    handle: OutboxHandle,
}

impl<S: Clone> Clone for Outbox<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            handle: self.handle.clone(),
        }
    }
}

impl<S> Outbox<S> {
    pub(crate) fn new(inner: S, handle: OutboxHandle) -> Self {
        Self { inner, handle }
    }

    /// The outbox: pending writes, dead letters, verdicts, counters.
    pub fn handle(&self) -> &OutboxHandle {
        &self.handle
    }

    /// The inner service (reads go to it; writes go to the service the
    /// drain started with).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably. Changing it changes reads, and writes
    /// only if the drain has not started.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one. The outbox goes on draining
    /// while any other holder of it is alive.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for Outbox<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("handle", &self.handle)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> Service<Request> for Outbox<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    /// Always ready: a read waits for the inner service inside its future,
    /// and a write only needs the local file.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.handle.start();
        let core = self.handle.core.clone();
        match request {
            Request::Write(write) => {
                let handle = self.handle.clone();
                ResponseFuture::boxed(Box::pin(async move {
                    let receipt = handle.submit(write).await?;
                    Ok(receipt.local_response())
                }))
            }
            read if core.is_idle() => ResponseFuture::direct(self.inner.clone().oneshot(read)),
            read => ResponseFuture::boxed(Box::pin(overlaid(self.inner.clone(), core, read))),
        }
    }
}

async fn ask<S>(inner: S, request: Request) -> Result<Response, BoxError>
where
    S: Service<Request, Response = Response> + Clone,
    S::Error: Into<BoxError>,
{
    inner.oneshot(request).await.map_err(Into::into)
}

/// A read with the pending writes laid over it. The gate is held from the
/// snapshot of the pending writes until the inner read has answered, so the
/// drain cannot start a write the snapshot does not hold while the read is
/// looking at the master; a write in flight is in the snapshot, and laying
/// it over a master that already applied it changes nothing (every write is
/// idempotent as a change of rows).
async fn overlaid<S>(inner: S, core: Arc<Core>, request: Request) -> Result<Response, BoxError>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let _gate = core.gate.read().await;
    let writes = core.snapshot();
    if writes.is_empty() {
        return ask(inner.clone(), request).await;
    }
    let overlay = Overlay::new(&writes);
    match request {
        Request::Get { view, id } => {
            if !overlay.touches(&id) {
                return ask(inner.clone(), Request::Get { view, id }).await;
            }
            if view.is_cacheable() && overlay.decides(&id) {
                // An insert, replace or delete decides the row: no need to
                // ask the master (which may be unreachable).
                let row = overlay.row(&view, &id, None, false);
                return Ok(Response::Row(row.map(Arc::new)));
            }
            let base = ask(
                inner.clone(),
                Request::Get {
                    view: view.clone(),
                    id: id.clone(),
                },
            )
            .await?
            .into_shared_row()?;
            let row = overlay.row(&view, &id, base.as_deref(), !view.is_cacheable());
            Ok(Response::Row(row.map(Arc::new)))
        }
        Request::List(view) => {
            let opaque = !view.is_cacheable();
            let rows = match view.pagination() {
                None => {
                    let rows = ask(inner.clone(), Request::List(view.clone()))
                        .await?
                        .into_shared_rows()?;
                    overlay.list(&view, &rows, opaque)
                }
                Some(_) if opaque || !overlay.adds_rows() => {
                    let page = ask(inner.clone(), Request::List(view.clone()))
                        .await?
                        .into_shared_rows()?;
                    overlay.page_in_place(&view, &page, opaque)
                }
                Some(pagination) => {
                    let whole = view.clone().with_pagination(None);
                    let full = ask(inner.clone(), Request::List(whole))
                        .await?
                        .into_shared_rows()?;
                    let skip = usize::try_from(pagination.skip()).unwrap_or(0);
                    let ipp = usize::try_from(pagination.get_ipp()).unwrap_or(0);
                    overlay.page(&view, &full, skip, ipp)
                }
            };
            Ok(Response::Rows(Arc::new(rows)))
        }
        Request::Count(view) if view.is_cacheable() => {
            let whole = view.clone().with_pagination(None);
            let full = ask(inner.clone(), Request::List(whole))
                .await?
                .into_shared_rows()?;
            Ok(Response::Count(
                overlay.list(&view, &full, false).len() as i64
            ))
        }
        Request::GetSome(view) if view.is_cacheable() => {
            let whole = view.clone().with_pagination(None);
            let full = ask(inner.clone(), Request::List(whole))
                .await?
                .into_shared_rows()?;
            let rows = match view.pagination() {
                None => overlay.list(&view, &full, false),
                Some(p) => overlay.page(
                    &view,
                    &full,
                    usize::try_from(p.skip()).unwrap_or(0),
                    usize::try_from(p.get_ipp()).unwrap_or(0),
                ),
            };
            Ok(Response::Some(rows.into_iter().next()))
        }
        Request::GetSome(view) => {
            let some = ask(inner.clone(), Request::GetSome(view.clone()))
                .await?
                .into_some()?;
            Ok(Response::Some(some.and_then(|(id, row)| {
                overlay
                    .row(&view, &id, Some(&row), true)
                    .map(|row| (id, row))
            })))
        }
        other => ask(inner.clone(), other).await,
    }
}
