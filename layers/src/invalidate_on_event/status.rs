use tokio::sync::watch;

/// What the event task has done so far: a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// How many times the stream was subscribed (1 after the first
    /// subscription, +1 per re-subscription). Counted once the subscription's
    /// invalidation is done.
    pub subscriptions: u64,
    /// How many events were handled: each one counted once its invalidation
    /// is done.
    pub events: u64,
    /// How many invalidations (on subscription or on an event) the cache
    /// backend refused. Reads bypass the cache until one succeeds.
    pub failed_invalidations: u64,
    /// Whether a subscription is currently open.
    pub subscribed: bool,
    /// Whether the task has ended (every service and the layer were dropped).
    pub finished: bool,
}

/// Watches the event task of one
/// [`InvalidateOnEventLayer`](super::InvalidateOnEventLayer): for health
/// checks, and for tests that must wait until an event was handled without
/// sleeping.
///
/// Holding an `EventStatus` does not keep the task alive.
#[derive(Clone, Debug)]
pub struct EventStatus {
    rx: watch::Receiver<EventStats>,
}

impl EventStatus {
    pub(crate) fn new(rx: watch::Receiver<EventStats>) -> Self {
        Self { rx }
    }

    /// The task's counters now.
    pub fn current(&self) -> EventStats {
        *self.rx.borrow()
    }

    /// Wait until `condition` holds for the counters, and return them. Returns
    /// `None` if the task ended (or was dropped before it started) without the
    /// condition ever holding.
    ///
    /// ```ignore
    /// let before = status.current().events;
    /// source.push(LiveEvent::Changed);
    /// status.wait_for(|s| s.events > before).await; // invalidation done
    /// ```
    pub async fn wait_for(
        &mut self,
        condition: impl FnMut(&EventStats) -> bool,
    ) -> Option<EventStats> {
        self.rx.wait_for(condition).await.ok().map(|stats| *stats)
    }

    /// Wait until the task has ended (or, if it never started, until its
    /// layer and services were all dropped).
    pub async fn finished(&mut self) {
        while self.rx.changed().await.is_ok() {}
    }
}
