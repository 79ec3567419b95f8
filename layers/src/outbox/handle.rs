//! The public handle on an outbox: submitting writes, reading the pending
//! writes, dead letters, verdicts and counters, flushing, retrying and
//! closing.

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tower::BoxError;

use super::core::{lock, Alive, Core};
use super::entry::{DeadLetter, PendingWrite};
use super::error::OutboxStoreFailed;
use super::receipt::Receipt;
use super::status::{FlushOutcome, OutboxStats, Settled, Verdict, WriteStatus};
use crate::request::WriteRequest;

/// A handle on one outbox: its pending writes, dead letters, verdicts and
/// counters. Cheap to clone; every clone, layer and service of one outbox
/// shares the same state.
#[derive(Clone)]
pub struct OutboxHandle {
    pub(crate) core: Arc<Core>,
    /// Held by every layer, service and handle: when the last goes, the
    /// worker stops (after the write in flight).
    pub(crate) _alive: Arc<Alive>,
    pub(crate) shutdown: watch::Receiver<()>,
}

impl fmt::Debug for OutboxHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxHandle")
            .field("file", &self.core.file())
            .field("pending", &self.core.pending_len.load(Ordering::Relaxed))
            .finish()
    }
}

impl OutboxHandle {
    /// The outbox file.
    pub fn file(&self) -> &Path {
        self.core.file()
    }

    /// Start the drain worker now, on the current tokio runtime (it also
    /// starts with the first request through a service of this outbox).
    /// Does nothing if it runs already, if no service was built yet, or
    /// outside a runtime.
    pub fn start(&self) {
        self.core.start(&self.shutdown);
    }

    /// Accept `write` into the outbox, as a write through a service of it
    /// does, and answer its [`Receipt`] (to await the master's verdict).
    ///
    /// Returns once the write is stored and synced. Errors:
    /// [`OutboxFull`](super::error::OutboxFull),
    /// [`OutboxStoreFailed`](super::error::OutboxStoreFailed),
    /// [`NotStorable`](super::error::NotStorable),
    /// [`OutboxClosed`](super::error::OutboxClosed); none of them stored
    /// anything.
    pub async fn submit(&self, write: WriteRequest) -> Result<Receipt, BoxError> {
        self.start();
        let op = self.core.op(write)?;
        let write = self.core.accept(op).await?;
        Ok(Receipt::new(write, self.clone()))
    }

    /// The pending writes, oldest first.
    pub fn pending(&self) -> Vec<PendingWrite> {
        self.core.snapshot().iter().map(|w| (**w).clone()).collect()
    }

    /// The ids of rows with writes pending, in the order of their first
    /// pending write (a UI greys these out). A pending `delete_all` has no
    /// id: see [`OutboxHandle::pending`].
    pub fn pending_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for write in self.core.snapshot() {
            if let Some(id) = write.op.id() {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    /// Whether row `id` has writes pending.
    pub fn is_pending(&self, id: &str) -> bool {
        self.core.snapshot().iter().any(|w| w.op.id() == Some(id))
    }

    /// The rejected writes, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.core.state).dead.values().cloned().collect()
    }

    async fn clear(&self, seq: Option<u64>) -> Result<usize, BoxError> {
        let store = self.core.store()?;
        let core = self.core.clone();
        // The file and the memory in one blocking task: it runs to the end
        // even if the caller gives up, so they never disagree.
        let removed = tokio::task::spawn_blocking(move || {
            let removed = store.clear_dead(seq)?;
            // Exactly what left the file: a rejection stored after the
            // clear stays; one stored before it but not yet in memory is
            // kept out.
            let mut state = lock(&core.state);
            for seq in &removed {
                if state.dead.remove(seq).is_none() {
                    state.cleared.insert(*seq);
                }
            }
            Ok::<_, String>(removed.len())
        })
        .await
        .map_err(|e| Box::new(OutboxStoreFailed::new(self.file(), e)) as BoxError)?
        .map_err(|e| Box::new(OutboxStoreFailed::new(self.file(), e)) as BoxError)?;
        Ok(removed)
    }

    /// Drop every dead letter (durably); answers how many there were.
    pub async fn clear_dead_letters(&self) -> Result<usize, BoxError> {
        self.clear(None).await
    }

    /// Drop the dead letter of write `seq` (durably); answers whether there
    /// was one.
    pub async fn remove_dead_letter(&self, seq: u64) -> Result<bool, BoxError> {
        Ok(self.clear(Some(seq)).await? > 0)
    }

    /// The counters, and the head write's attempts.
    pub fn stats(&self) -> OutboxStats {
        self.core.stats()
    }

    /// Where write `seq` stands.
    pub fn status(&self, seq: u64) -> WriteStatus {
        self.core.status(seq)
    }

    /// Wait for write `seq`'s verdict ([`Verdict::Forgotten`] for a write
    /// settled before this process, or longer ago than the last
    /// [`RECENT_VERDICTS`](super::RECENT_VERDICTS); an unknown `seq` answers `Forgotten` too).
    ///
    /// If the drain stops with the write still pending (the outbox was
    /// closed, or its worker ended), this answers [`Verdict::Unsettled`]
    /// instead of waiting for ever.
    pub async fn verdict(&self, seq: u64) -> Verdict {
        let mut progress = self.core.progress.subscribe();
        loop {
            let stopped = progress.borrow_and_update().stopped;
            match self.core.status(seq) {
                WriteStatus::Settled(verdict) => return verdict,
                WriteStatus::Unknown => return Verdict::Forgotten,
                WriteStatus::Pending { .. } if stopped => return Verdict::Unsettled,
                WriteStatus::Pending { .. } => {}
            }
            if progress.changed().await.is_err() {
                return Verdict::Forgotten;
            }
        }
    }

    /// Every write settled from now on, as it settles. A receiver that
    /// falls more than [`RECENT_VERDICTS`](super::RECENT_VERDICTS) behind skips the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Settled> {
        self.core.settled.subscribe()
    }

    /// Wait until nothing is pending. While the master is unreachable this
    /// waits; wrap it in a timeout, or use
    /// [`flush_or_stall`](Self::flush_or_stall). It starts the drain if
    /// needed, which takes a service built by the layer (a `LiveTable` with
    /// the outbox has one). It also returns if the drain worker stops
    /// (the outbox was closed, or the worker panicked): nothing would
    /// drain the rest; [`pending`](Self::pending) says what is left.
    pub async fn flush(&self) {
        self.start();
        let mut progress = self.core.progress.subscribe();
        while !self.core.is_idle() {
            if progress.borrow_and_update().stopped {
                return;
            }
            if progress.changed().await.is_err() {
                return;
            }
        }
    }

    /// Wait until nothing is pending, or until an attempt made after this
    /// call fails because the master is unreachable, or the worker stops.
    pub async fn flush_or_stall(&self) -> FlushOutcome {
        self.start();
        let mut progress = self.core.progress.subscribe();
        let failures = progress.borrow_and_update().failures;
        loop {
            if self.core.is_idle() {
                return FlushOutcome::Empty;
            }
            let now = *progress.borrow_and_update();
            if now.failures > failures {
                let stats = self.stats();
                return FlushOutcome::Stalled {
                    pending: stats.pending,
                    error: stats.last_error.unwrap_or_default(),
                };
            }
            if now.stopped || self.core.closing.load(Ordering::Acquire) {
                return FlushOutcome::Closed {
                    pending: self.stats().pending,
                };
            }
            if progress.changed().await.is_err() {
                return FlushOutcome::Closed {
                    pending: self.stats().pending,
                };
            }
        }
    }

    /// Cut the current backoff short: retry the head write now (for an app
    /// that knows the network is back).
    pub fn retry_now(&self) {
        self.core.wake.notify_one();
    }

    /// Stop the drain after the write in flight, and close the file: every
    /// pending write stays in it for the next open. Later writes through
    /// any clone fail with [`OutboxClosed`](super::error::OutboxClosed).
    /// Returns once the worker has stopped and the file is closed (it can
    /// be opened again once every holder of the old state has dropped it).
    pub async fn close(&self) {
        self.core.closing.store(true, Ordering::Release);
        self.core.wake.notify_one();
        let mut progress = self.core.progress.subscribe();
        if self.core.started.load(Ordering::Acquire) {
            while !progress.borrow_and_update().stopped {
                if progress.changed().await.is_err() {
                    break;
                }
            }
        }
        let _turn = self.core.accept_lock.lock().await;
        lock(&self.core.store).take();
    }
}
