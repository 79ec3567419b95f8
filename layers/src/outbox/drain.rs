//! The drain worker: applies the pending writes to the inner service one at
//! a time, in order, recognising replayed inserts, retrying an unreachable
//! master with backoff and moving rejected writes to the dead letters.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tower::{BoxError, Service, ServiceExt};
use tracing::Instrument as _;

use super::classify::Failure;
use super::core::{lock, Core, Starter};
use super::entry::{DeadLetter, OutboxOp, PendingWrite};
use super::overlay::holds;
use super::status::Verdict;
use crate::backoff::Backoff;
use crate::request::{Request, Response, View};

/// Build the function that starts the worker over `inner`.
pub(crate) fn starter<S>(inner: S) -> Starter
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    Box::new(move |core: Arc<Core>, shutdown: watch::Receiver<()>| {
        let span = tracing::info_span!(parent: None, "outbox", file = %core.file().display());
        tokio::spawn(
            async move {
                // However the worker ends (it returns, it panics outside
                // the guarded write, its runtime shuts down before it
                // finishes), flushes, verdicts and `close` see it stopped
                // instead of waiting for ever. The pending writes stay in
                // the file for the next open.
                let _stopped = MarkStopped(core.clone());
                let worker = AssertUnwindSafe(run(core, inner, shutdown));
                if let Err(payload) = worker.catch_unwind().await {
                    tracing::error!(
                        panic = %panic_text(payload.as_ref()),
                        "the outbox drain panicked and stopped; pending writes stay in the file"
                    );
                }
            }
            .instrument(span),
        );
    })
}

/// Marks the worker stopped when dropped.
struct MarkStopped(Arc<Core>);

impl Drop for MarkStopped {
    fn drop(&mut self) {
        self.0.bump(|p| p.stopped = true);
    }
}

/// What a panic said, as text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".into())
}

enum Attempt {
    Applied(Response, bool),
    Failed(BoxError),
}

async fn attempt<S>(inner: S, write: &PendingWrite, in_doubt: bool, verify: &View) -> Attempt
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    // A replayed insert is recognised by reading the row back: if the master
    // holds it as written, the earlier attempt landed.
    if in_doubt {
        if let OutboxOp::Insert { id, record } | OutboxOp::InsertReturnId { id, record } = &write.op
        {
            let read = Request::Get {
                view: verify.clone(),
                id: id.clone(),
            };
            // Guarded like the write: a panic is a failed attempt.
            let check = AssertUnwindSafe(inner.clone().oneshot(read)).catch_unwind();
            let answer = match check.await {
                Ok(answer) => answer.map_err(Into::into),
                Err(payload) => Err(format!(
                    "the replay check panicked: {}",
                    panic_text(payload.as_ref())
                )
                .into()),
            };
            match answer {
                Ok(Response::Row(Some(row))) if holds(&row, record) => {
                    let answer = write.op.shape_answer(Response::Record((*row).clone()));
                    return Attempt::Applied(answer, true);
                }
                Ok(_) => {}
                Err(error) => return Attempt::Failed(error),
            }
        }
    }
    let call = inner.oneshot(write.op.request());
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(Ok(response)) => Attempt::Applied(write.op.shape_answer(response), false),
        Ok(Err(error)) => Attempt::Failed(error.into()),
        Err(payload) => {
            Attempt::Failed(format!("the write panicked: {}", panic_text(payload.as_ref())).into())
        }
    }
}

async fn run<S>(core: Arc<Core>, inner: S, mut shutdown: watch::Receiver<()>)
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let settings = core.settings();
    let verify = match &settings.verify {
        Some(table) => View::new().with_handle(table.clone()),
        None => View::new(),
    };
    let mut backoff = Backoff::new(settings.policy);
    let mut last_started = 0u64;
    tracing::info!(pending = core.stats().pending, "outbox drain started");
    'outer: loop {
        // Wait for a write (or for the last holder to go).
        let (head, in_doubt) = loop {
            if core.closing.load(Ordering::Acquire) {
                break 'outer;
            }
            let notified = core.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(head) = core.head() {
                break head;
            }
            tokio::select! {
                _ = notified => {}
                _ = shutdown.changed() => break 'outer,
            }
        };
        if head.seq != last_started {
            // Wait for reads that took their snapshot before this write
            // started: they must not see the master change under it.
            drop(core.gate.write().await);
            last_started = head.seq;
        }
        {
            let mut state = lock(&core.state);
            state.head_attempts += 1;
        }
        let span = tracing::debug_span!(
            "outbox_apply",
            seq = head.seq,
            op = head.op.op(),
            id = head.op.id(),
            replay = in_doubt
        );
        let outcome = attempt(inner.clone(), &head, in_doubt, &verify)
            .instrument(span.clone())
            .await;
        // Events below are logged in the write's span (entered only around
        // each event: never across an await).
        let failure = match outcome {
            Attempt::Applied(response, recognised) => {
                let store = match core.store() {
                    Ok(store) => store,
                    Err(_) => break 'outer,
                };
                let seq = head.seq;
                match tokio::task::spawn_blocking(move || store.remove(seq)).await {
                    Ok(Ok(())) => {
                        if recognised {
                            lock(&core.state).replays += 1;
                            span.in_scope(|| {
                                tracing::info!("replayed insert found on the master: applied once")
                            });
                            // The write that landed never answered, so a
                            // cache below did not invalidate for it.
                            if let Some(invalidator) = &settings.invalidator {
                                let invalidated =
                                    invalidator.invalidate().instrument(span.clone()).await;
                                if let Err(error) = invalidated {
                                    span.in_scope(|| tracing::warn!(%error, "invalidation after a recognised replay failed; reads bypass the cache until one succeeds"));
                                }
                            }
                        }
                        span.in_scope(|| {
                            tracing::debug!(outcome = "applied", "outbox write applied")
                        });
                        backoff.reset();
                        core.settle(&head, Verdict::Applied(response));
                        continue;
                    }
                    Ok(Err(e)) => format!("applied, but the outbox could not drop it: {e}"),
                    Err(e) => format!("applied, but the outbox could not drop it: {e}"),
                }
            }
            Attempt::Failed(error) => match (settings.classify)(&*error) {
                Failure::Rejected => {
                    let attempts = lock(&core.state).head_attempts;
                    let dead = DeadLetter {
                        write: (*head).clone(),
                        error: error.to_string(),
                        rejected_at: SystemTime::now(),
                        attempts,
                    };
                    let store = match core.store() {
                        Ok(store) => store,
                        Err(_) => break 'outer,
                    };
                    let stored = dead.clone();
                    match tokio::task::spawn_blocking(move || store.reject(&stored)).await {
                        Ok(Ok(())) => {
                            span.in_scope(|| {
                                tracing::warn!(
                                    outcome = "rejected",
                                    %error,
                                    "the master rejected an outbox write; it moved to the dead letters"
                                )
                            });
                            backoff.reset();
                            core.settle(&head, Verdict::Rejected(dead));
                            continue;
                        }
                        Ok(Err(e)) => format!("rejected, but the outbox could not move it: {e}"),
                        Err(e) => format!("rejected, but the outbox could not move it: {e}"),
                    }
                }
                Failure::Unreachable => error.to_string(),
            },
        };
        // The master is unreachable (or the file failed): the write stays at
        // the head, and may have landed, so the next attempt is a replay.
        {
            let mut state = lock(&core.state);
            state.head_in_doubt = true;
            state.last_error = Some(failure.clone());
        }
        core.unreachable.fetch_add(1, Ordering::Relaxed);
        core.bump(|p| p.failures += 1);
        let delay = backoff.next_delay();
        span.in_scope(|| {
            tracing::debug!(
                outcome = "unreachable",
                error = %failure,
                retry_in_ms = delay.as_millis() as u64,
                "outbox write not applied; retrying"
            )
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = core.wake.notified() => {}
            _ = shutdown.changed() => break 'outer,
        }
    }
    tracing::info!(pending = core.stats().pending, "outbox drain stopped");
}
