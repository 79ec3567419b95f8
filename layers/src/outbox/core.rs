//! The state every clone of one outbox shares: the file, the pending writes
//! in memory, the dead letters, the verdicts, and the drain worker.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures_util::FutureExt as _;
use tokio::sync::{broadcast, watch, Notify};
use tower::{BoxError, Service, ServiceExt};
use tracing::Instrument as _;
use vantage_table::any::AnyTable;

use super::classify::{Classifier, Failure};
use super::entry::{DeadLetter, OutboxOp, PendingWrite};
use super::error::{OutboxClosed, OutboxFull, OutboxStoreFailed};
use super::overlay::holds;
use super::store::{Contents, Store};
use crate::backoff::{Backoff, BackoffPolicy};
use crate::request::{Request, Response, View, WriteRequest};
use crate::table::IdGenerator;

/// How many recent verdicts an outbox keeps in memory for
/// [`OutboxHandle::status`].
pub const RECENT_VERDICTS: usize = 1024;

/// What became of a write, once the master has had its say.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Verdict {
    /// The master accepted it; this is its answer (for an
    /// `insert_return_id`, the id).
    Applied(Response),
    /// The master rejected it; it waits in the dead-letter list.
    Rejected(DeadLetter),
    /// It left the outbox before this process opened it, or too long ago
    /// to be remembered: it was applied, or rejected and since cleared from
    /// the dead letters.
    Forgotten,
}

/// Where a write stands.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WriteStatus {
    /// Accepted locally, waiting for the master.
    Pending {
        /// Attempts made so far (non-zero only for the write at the head).
        attempts: u32,
        /// The last attempt's error, if it failed as unreachable.
        last_error: Option<String>,
    },
    /// Settled: see the [`Verdict`].
    Settled(Verdict),
    /// No write with this sequence number was ever accepted.
    Unknown,
}

/// One settled write, as [`OutboxHandle::subscribe`] reports it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settled {
    /// The write.
    pub write: Arc<PendingWrite>,
    /// What became of it ([`Verdict::Applied`] or [`Verdict::Rejected`]).
    pub verdict: Verdict,
}

/// The outbox's counters and its head, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Writes accepted and not yet applied or rejected.
    pub pending: usize,
    /// Writes in the dead-letter list.
    pub dead_letters: usize,
    /// Writes accepted by this process.
    pub accepted: u64,
    /// Writes the master accepted, drained by this process.
    pub applied: u64,
    /// Writes the master rejected (moved to the dead letters) in this process.
    pub rejected: u64,
    /// Attempts that found the master unreachable.
    pub unreachable_attempts: u64,
    /// Replays recognised as already applied: an insert found on the master
    /// as written, after a crash or an attempt whose outcome was unknown.
    pub replays_recognised: u64,
    /// Attempts made on the write at the head so far.
    pub head_attempts: u32,
    /// The error of the last attempt, while the head is failing as
    /// unreachable.
    pub last_error: Option<String>,
    /// When the oldest pending write was accepted.
    pub oldest_pending: Option<SystemTime>,
}

/// Where the drain stands, watched by verdict waiters and flushes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// Writes settled (applied or rejected).
    settled: u64,
    /// Attempts that failed as unreachable.
    failures: u64,
    /// The worker ended.
    stopped: bool,
}

/// What [`OutboxHandle::flush_or_stall`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushOutcome {
    /// Nothing is pending.
    Empty,
    /// An attempt failed because the master is unreachable; `pending` writes
    /// still wait (they are retried in the background).
    Stalled {
        /// Writes still pending.
        pending: usize,
        /// The failed attempt's error.
        error: String,
    },
    /// The outbox was closed (or its worker ended) with writes pending.
    Closed {
        /// Writes still pending (kept in the file).
        pending: usize,
    },
}

/// The outbox's settings, shared by every clone (set through
/// [`OutboxLayer`](super::OutboxLayer)'s builders).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) max_pending: usize,
    pub(crate) ids: IdGenerator,
    pub(crate) classify: Classifier,
    pub(crate) policy: BackoffPolicy,
    pub(crate) verify: Option<AnyTable>,
    pub(crate) invalidator: Option<crate::cache::Invalidator>,
}

type Starter = Box<dyn FnOnce(Arc<Core>, watch::Receiver<()>) + Send>;

struct State {
    pending: VecDeque<Arc<PendingWrite>>,
    dead: BTreeMap<u64, DeadLetter>,
    next_seq: u64,
    /// The master may already hold the head write (a crash, or an attempt
    /// whose outcome is unknown): its next attempt is a replay.
    head_in_doubt: bool,
    head_attempts: u32,
    last_error: Option<String>,
    recent: VecDeque<(u64, Verdict)>,
    accepted: u64,
    applied: u64,
    rejected: u64,
    replays: u64,
}

pub(crate) struct Core {
    pub(crate) settings: Mutex<Settings>,
    store: Mutex<Option<Arc<Store>>>,
    file: PathBuf,
    state: Mutex<State>,
    pending_len: AtomicUsize,
    unreachable: AtomicU64,
    /// Serialises acceptances: one append at a time, in sequence order.
    accept_lock: tokio::sync::Mutex<()>,
    /// Readers hold it (shared) across their snapshot of the pending writes
    /// and their inner read; the worker takes it (exclusively) for an
    /// instant before it starts a write it has not started before.
    pub(crate) gate: tokio::sync::RwLock<()>,
    wake: Notify,
    progress: watch::Sender<Progress>,
    settled: broadcast::Sender<Settled>,
    starter: Mutex<Option<Starter>>,
    started: AtomicBool,
    closing: AtomicBool,
}

/// Dropped with the last layer, service or handle: tells the worker to stop.
pub(crate) struct Alive {
    _tx: watch::Sender<()>,
}

impl fmt::Debug for Alive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Alive")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    pub(crate) fn new(
        store: Store,
        contents: Contents,
        settings: Settings,
    ) -> (Arc<Core>, Arc<Alive>, watch::Receiver<()>) {
        let (tx, rx) = watch::channel(());
        let alive = Arc::new(Alive { _tx: tx });
        let pending: VecDeque<_> = contents.pending.into_iter().map(Arc::new).collect();
        let in_doubt = !pending.is_empty();
        let core = Arc::new(Core {
            settings: Mutex::new(settings),
            file: store.file().to_path_buf(),
            store: Mutex::new(Some(Arc::new(store))),
            pending_len: AtomicUsize::new(pending.len()),
            state: Mutex::new(State {
                pending,
                dead: contents
                    .dead
                    .into_iter()
                    .map(|d| (d.write.seq, d))
                    .collect(),
                next_seq: contents.next_seq,
                // The previous process may have sent the head and died before
                // removing it: its first attempt here is a replay.
                head_in_doubt: in_doubt,
                head_attempts: 0,
                last_error: None,
                recent: VecDeque::new(),
                accepted: 0,
                applied: 0,
                rejected: 0,
                replays: 0,
            }),
            unreachable: AtomicU64::new(0),
            accept_lock: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            wake: Notify::new(),
            progress: watch::channel(Progress::default()).0,
            settled: broadcast::channel(RECENT_VERDICTS).0,
            starter: Mutex::new(None),
            started: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        (core, alive, rx)
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    fn store(&self) -> Result<Arc<Store>, BoxError> {
        lock(&self.store)
            .clone()
            .ok_or_else(|| Box::new(OutboxClosed::new()) as BoxError)
    }

    /// Whether nothing is pending (one atomic load).
    pub(crate) fn is_idle(&self) -> bool {
        self.pending_len.load(Ordering::Acquire) == 0
    }

    /// The pending writes, in order.
    pub(crate) fn snapshot(&self) -> Vec<Arc<PendingWrite>> {
        lock(&self.state).pending.iter().cloned().collect()
    }

    /// Set (or replace) how the worker starts: the latest layered service
    /// wins until the worker has started.
    pub(crate) fn set_starter(&self, starter: Starter) {
        if !self.started.load(Ordering::Acquire) {
            *lock(&self.starter) = Some(starter);
        }
    }

    /// Start the worker on the current tokio runtime, if it is not running
    /// and a service was layered. Outside a runtime this does nothing.
    pub(crate) fn start(self: &Arc<Self>, shutdown: &watch::Receiver<()>) {
        if self.started.load(Ordering::Acquire) || self.closing.load(Ordering::Acquire) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let starter = lock(&self.starter).take();
        if let Some(starter) = starter {
            if !self.started.swap(true, Ordering::AcqRel) {
                starter(self.clone(), shutdown.clone());
            }
        }
    }

    /// Store `op` durably and queue it; the answer is the receipt.
    pub(crate) fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Turn a write request into what the outbox stores: an
    /// `insert_return_id` gets its id now.
    pub(crate) fn op(&self, write: WriteRequest) -> Result<OutboxOp, BoxError> {
        Ok(match write {
            WriteRequest::Insert { id, record } => OutboxOp::Insert { id, record },
            WriteRequest::Replace { id, record } => OutboxOp::Replace { id, record },
            WriteRequest::Patch { id, partial } => OutboxOp::Patch { id, partial },
            WriteRequest::Delete { id } => OutboxOp::Delete { id },
            WriteRequest::DeleteAll { view } => {
                if !view.is_cacheable() {
                    return Err(Box::new(super::error::NotStorable::new()));
                }
                OutboxOp::DeleteAll {
                    eq: view.eq_conditions().to_vec(),
                }
            }
            WriteRequest::InsertReturnId { record } => {
                let ids = lock(&self.settings).ids.clone();
                OutboxOp::InsertReturnId { id: ids(), record }
            }
        })
    }

    /// Store `op` durably and queue it; the answer is the stored write.
    pub(crate) async fn accept(
        self: &Arc<Self>,
        op: OutboxOp,
    ) -> Result<Arc<PendingWrite>, BoxError> {
        let max_pending = lock(&self.settings).max_pending;
        let core = self.clone();
        // On a task of its own: once started, the write is stored and queued
        // even if the caller drops its future.
        let task = tokio::spawn(async move {
            let _turn = core.accept_lock.lock().await;
            let store = core.store()?;
            let write = {
                let state = lock(&core.state);
                if state.pending.len() >= max_pending {
                    return Err(Box::new(OutboxFull::new(max_pending)) as BoxError);
                }
                PendingWrite {
                    seq: state.next_seq,
                    op,
                    accepted_at: SystemTime::now(),
                }
            };
            let write = Arc::new(write);
            let stored = write.clone();
            let appended = tokio::task::spawn_blocking(move || store.append(&stored)).await;
            match appended {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Box::new(OutboxStoreFailed::new(core.file(), e)) as BoxError)
                }
                Err(e) => return Err(Box::new(OutboxStoreFailed::new(core.file(), e)) as BoxError),
            }
            {
                let mut state = lock(&core.state);
                state.next_seq = write.seq + 1;
                state.pending.push_back(write.clone());
                state.accepted += 1;
                core.pending_len
                    .store(state.pending.len(), Ordering::Release);
            }
            tracing::debug!(
                seq = write.seq,
                op = write.op.op(),
                id = write.op.id(),
                "write accepted into the outbox"
            );
            core.wake.notify_one();
            Ok(write)
        });
        match task.await {
            Ok(result) => result,
            Err(_) => Err(Box::new(OutboxClosed::new())),
        }
    }

    fn head(&self) -> Option<(Arc<PendingWrite>, bool)> {
        let state = lock(&self.state);
        state
            .pending
            .front()
            .map(|head| (head.clone(), state.head_in_doubt))
    }

    fn bump(&self, change: impl FnOnce(&mut Progress)) {
        self.progress.send_modify(change);
    }

    fn remember(state: &mut State, seq: u64, verdict: Verdict) {
        state.recent.push_back((seq, verdict));
        while state.recent.len() > RECENT_VERDICTS {
            state.recent.pop_front();
        }
    }

    fn settle(&self, write: &Arc<PendingWrite>, verdict: Verdict) {
        {
            let mut state = lock(&self.state);
            if state.pending.front().map(|h| h.seq) == Some(write.seq) {
                state.pending.pop_front();
            }
            state.head_in_doubt = false;
            state.head_attempts = 0;
            state.last_error = None;
            match &verdict {
                Verdict::Applied(_) => state.applied += 1,
                Verdict::Rejected(dead) => {
                    state.rejected += 1;
                    state.dead.insert(write.seq, dead.clone());
                }
                Verdict::Forgotten => {}
            }
            Self::remember(&mut state, write.seq, verdict.clone());
            self.pending_len
                .store(state.pending.len(), Ordering::Release);
        }
        let _ = self.settled.send(Settled {
            write: write.clone(),
            verdict,
        });
        self.bump(|p| p.settled += 1);
    }

    fn status(&self, seq: u64) -> WriteStatus {
        let state = lock(&self.state);
        if let Some(position) = state.pending.iter().position(|w| w.seq == seq) {
            return WriteStatus::Pending {
                attempts: if position == 0 {
                    state.head_attempts
                } else {
                    0
                },
                last_error: if position == 0 {
                    state.last_error.clone()
                } else {
                    None
                },
            };
        }
        if let Some((_, verdict)) = state.recent.iter().rev().find(|(s, _)| *s == seq) {
            return WriteStatus::Settled(verdict.clone());
        }
        if let Some(dead) = state.dead.get(&seq) {
            return WriteStatus::Settled(Verdict::Rejected(dead.clone()));
        }
        if seq >= state.next_seq || seq == 0 {
            WriteStatus::Unknown
        } else {
            WriteStatus::Settled(Verdict::Forgotten)
        }
    }

    pub(crate) fn stats(&self) -> OutboxStats {
        let state = lock(&self.state);
        OutboxStats {
            pending: state.pending.len(),
            dead_letters: state.dead.len(),
            accepted: state.accepted,
            applied: state.applied,
            rejected: state.rejected,
            unreachable_attempts: self.unreachable.load(Ordering::Relaxed),
            replays_recognised: state.replays,
            head_attempts: state.head_attempts,
            last_error: state.last_error.clone(),
            oldest_pending: state.pending.front().map(|w| w.accepted_at),
        }
    }
}

// ── the worker ────────────────────────────────────────────────────────────

/// Build the function that starts the worker over `inner`.
pub(crate) fn starter<S>(inner: S) -> Starter
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    Box::new(move |core: Arc<Core>, shutdown: watch::Receiver<()>| {
        let span = tracing::info_span!(parent: None, "outbox", file = %core.file().display());
        tokio::spawn(run(core, inner, shutdown).instrument(span));
    })
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
            match inner.clone().oneshot(read).await.map_err(Into::into) {
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
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-text payload".into());
            Attempt::Failed(format!("the write panicked: {message}").into())
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
        let _enter = span.enter();
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
                            tracing::info!("replayed insert found on the master: applied once");
                            // The write that landed never answered, so a
                            // cache below did not invalidate for it.
                            if let Some(invalidator) = &settings.invalidator {
                                if let Err(error) = invalidator.invalidate().await {
                                    tracing::warn!(%error, "invalidation after a recognised replay failed; reads bypass the cache until one succeeds");
                                }
                            }
                        }
                        tracing::debug!(outcome = "applied", "outbox write applied");
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
                            tracing::warn!(
                                outcome = "rejected",
                                %error,
                                "the master rejected an outbox write; it moved to the dead letters"
                            );
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
        tracing::debug!(
            outcome = "unreachable",
            error = %failure,
            retry_in_ms = delay.as_millis() as u64,
            "outbox write not applied; retrying"
        );
        drop(_enter);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = core.wake.notified() => {}
            _ = shutdown.changed() => break 'outer,
        }
    }
    tracing::info!(pending = core.stats().pending, "outbox drain stopped");
    core.bump(|p| p.stopped = true);
}

// ── the handle ────────────────────────────────────────────────────────────

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

/// The receipt of a write accepted into the outbox: it is on disk, and
/// [`Receipt::verdict`] waits for the master's answer.
#[derive(Clone)]
pub struct Receipt {
    write: Arc<PendingWrite>,
    handle: OutboxHandle,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("seq", &self.write.seq)
            .field("op", &self.write.op.op())
            .field("id", &self.write.op.id())
            .finish()
    }
}

impl Receipt {
    pub(crate) fn new(write: Arc<PendingWrite>, handle: OutboxHandle) -> Self {
        Self { write, handle }
    }

    /// The write's sequence number.
    ///
    /// Numbers grow with each accepted write and are never reused.
    pub fn seq(&self) -> u64 {
        self.write.seq
    }

    /// The write as stored (an `insert_return_id` with its generated id).
    pub fn write(&self) -> &PendingWrite {
        &self.write
    }

    /// What the caller was answered locally: the record as written (the
    /// partial, for a patch), `Done`, or the generated id.
    pub fn local_response(&self) -> Response {
        self.write.op.local_response()
    }

    /// Where the write stands now.
    pub fn status(&self) -> WriteStatus {
        self.handle.status(self.write.seq)
    }

    /// Wait for the master's verdict. While the master is unreachable this
    /// waits (the write is retried in the background); wrap it in a timeout
    /// to stop waiting.
    pub async fn verdict(&self) -> Verdict {
        self.handle.verdict(self.write.seq).await
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
        let removed = tokio::task::spawn_blocking(move || store.clear_dead(seq))
            .await
            .map_err(|e| Box::new(OutboxStoreFailed::new(self.file(), e)) as BoxError)?
            .map_err(|e| Box::new(OutboxStoreFailed::new(self.file(), e)) as BoxError)?;
        let mut state = lock(&self.core.state);
        match seq {
            Some(seq) => {
                state.dead.remove(&seq);
            }
            None => state.dead.clear(),
        }
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
    /// [`RECENT_VERDICTS`]; an unknown `seq` answers `Forgotten` too).
    pub async fn verdict(&self, seq: u64) -> Verdict {
        let mut progress = self.core.progress.subscribe();
        loop {
            match self.core.status(seq) {
                WriteStatus::Settled(verdict) => return verdict,
                WriteStatus::Unknown => return Verdict::Forgotten,
                WriteStatus::Pending { .. } => {}
            }
            if progress.changed().await.is_err() {
                return Verdict::Forgotten;
            }
        }
    }

    /// Every write settled from now on, as it settles. A receiver that
    /// falls more than [`RECENT_VERDICTS`] behind skips the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Settled> {
        self.core.settled.subscribe()
    }

    /// Wait until nothing is pending. While the master is unreachable this
    /// waits; wrap it in a timeout, or use
    /// [`flush_or_stall`](Self::flush_or_stall). It starts the drain if
    /// needed, which takes a service built by the layer (a `LiveTable` with
    /// the outbox has one).
    pub async fn flush(&self) {
        self.start();
        let mut progress = self.core.progress.subscribe();
        while !self.core.is_idle() {
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
