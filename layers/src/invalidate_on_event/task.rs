//! The background task: subscribe, invalidate on every event, re-subscribe
//! with backoff, stop when nobody uses the layer any more.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::status::{EventStats, EventStatus};
use crate::backoff::{Backoff, BackoffPolicy};
use crate::cache::{Invalidator, RowChange};
use crate::live_stream::{LiveEvent, LiveStream};

/// Everything the task needs, held until it is spawned.
struct Pending {
    stream: Arc<dyn LiveStream>,
    invalidator: Invalidator,
    policy: BackoffPolicy,
    shutdown: oneshot::Receiver<()>,
    status: watch::Sender<EventStats>,
}

/// Shared by a layer and every service it built. The task holds none of it:
/// when the last `Arc<Task>` goes, `alive` is dropped and the task, waiting on
/// the other end, ends.
pub(crate) struct Task {
    pending: Mutex<Option<Pending>>,
    started: AtomicBool,
    cache_key: String,
    status: watch::Receiver<EventStats>,
    _alive: oneshot::Sender<()>,
}

impl Task {
    pub(crate) fn new(
        stream: Arc<dyn LiveStream>,
        invalidator: Invalidator,
        policy: BackoffPolicy,
    ) -> Self {
        let (alive, shutdown) = oneshot::channel();
        let (status_tx, status) = watch::channel(EventStats::default());
        Self {
            cache_key: invalidator.cache_key().to_owned(),
            pending: Mutex::new(Some(Pending {
                stream,
                invalidator,
                policy,
                shutdown,
                status: status_tx,
            })),
            started: AtomicBool::new(false),
            status,
            _alive: alive,
        }
    }

    /// Spawn the task on the current tokio runtime, unless it runs already.
    /// Outside a runtime this does nothing; the next call tries again.
    pub(crate) fn start(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pending) = pending.take() {
            // A root span: a task started by the first request (a stack built
            // outside a runtime) must not log into that request's trace for
            // the rest of its life.
            let span =
                tracing::info_span!(parent: None, "live_stream", cache_key = %self.cache_key);
            runtime.spawn(run(pending).instrument(span));
            self.started.store(true, Ordering::Release);
        }
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Whether the first subscription was made (and its invalidation done),
    /// or the task can never make one.
    pub(crate) fn has_subscribed(&self) -> bool {
        let stats = self.status.borrow();
        stats.subscriptions > 0 || stats.finished
    }

    /// Wait until [`Task::has_subscribed`].
    pub(crate) async fn first_subscription(&self) {
        let mut status = self.status.clone();
        let _ = status.wait_for(|s| s.subscriptions > 0 || s.finished).await;
    }

    pub(crate) fn status(&self) -> EventStatus {
        EventStatus::new(self.status.clone())
    }

    pub(crate) fn cache_key(&self) -> &str {
        &self.cache_key
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("cache_key", &self.cache_key)
            .field("started", &self.is_started())
            .field("stats", &*self.status.borrow())
            .finish()
    }
}

/// Drop the cache_key; count a failure (the cache layer has already poisoned
/// the key, so reads bypass the backend).
async fn invalidate(
    invalidator: &Invalidator,
    status: &watch::Sender<EventStats>,
    reason: &str,
    event: Option<&LiveEvent>,
) {
    // On (re)subscribing, slots filled before are marked stale where the
    // cache layer serves stale slots while it refreshes them, else dropped.
    let outcome = match event.map(RowChange::of_event) {
        None => invalidator.mark_stale().await,
        // Only the slots the row can change, where the cache layer drops
        // rows (else the whole cache_key).
        Some(Some(change)) => invalidator.invalidate_row(&change).await,
        Some(None) => invalidator.invalidate().await,
    };
    match outcome {
        Ok(()) => tracing::debug!(
            cache_key = invalidator.cache_key(),
            reason,
            event_kind = event.map(LiveEvent::kind),
            id = event.and_then(LiveEvent::id),
            outcome = "invalidated"
        ),
        Err(error) => {
            tracing::warn!(
                cache_key = invalidator.cache_key(),
                reason,
                %error,
                outcome = "failed",
                "invalidation failed; reads bypass the cache until one succeeds"
            );
            status.send_modify(|s| s.failed_invalidations += 1);
        }
    }
}

enum Exit {
    Ended,
    Shutdown,
}

async fn run(pending: Pending) {
    let Pending {
        stream,
        invalidator,
        policy,
        mut shutdown,
        status,
    } = pending;
    let cache_key = invalidator.cache_key().to_owned();
    let mut backoff = Backoff::new(policy);

    loop {
        // Subscribe first, then drop the cache_key (or, with
        // stale-while-revalidate, mark its slots stale): whatever changed
        // while we were not subscribed is covered by that, whatever changes
        // from now on arrives as an event.
        let mut events = stream.subscribe();
        let since = Instant::now();
        invalidate(&invalidator, &status, "subscribed", None).await;
        status.send_modify(|s| {
            s.subscriptions += 1;
            s.subscribed = true;
        });
        tracing::info!(
            cache_key,
            subscription = status.borrow().subscriptions,
            "live stream connected"
        );

        let exit = loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break Exit::Shutdown,
                next = events.next() => match next {
                    // One event at a time: its invalidation is done before the
                    // next event is taken.
                    Some(event) => {
                        invalidator.stats().event_received();
                        // One span per event, inside the task's `live_stream`
                        // span: the invalidation (and its cache backend call)
                        // is traced under it.
                        let span = tracing::debug_span!(
                            "live_event",
                            event_kind = event.kind(),
                            id = event.id(),
                        );
                        invalidate(&invalidator, &status, "event", Some(&event))
                            .instrument(span)
                            .await;
                        status.send_modify(|s| s.events += 1);
                    }
                    None => break Exit::Ended,
                },
            }
        };
        drop(events);
        status.send_modify(|s| s.subscribed = false);
        if let Exit::Shutdown = exit {
            break;
        }

        let up_for = since.elapsed();
        tracing::info!(
            cache_key,
            up_for_ms = up_for.as_millis() as u64,
            "live stream disconnected"
        );
        // A subscription that stayed up for a whole cap was healthy: start
        // the delays over. One that ended sooner keeps them growing.
        if up_for >= policy.max {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        // A recovery in progress: `warn!`, as the design asks.
        tracing::warn!(
            cache_key,
            attempt = backoff.attempt(),
            delay_ms = delay.as_millis() as u64,
            "live stream reconnecting"
        );
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }

    tracing::info!(cache_key, "live stream stopped: the last user was dropped");
    status.send_modify(|s| {
        s.subscribed = false;
        s.finished = true;
    });
}
