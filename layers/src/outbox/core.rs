//! The state every clone of one outbox shares: the file, the pending writes
//! in memory, the dead letters and the verdicts (the drain worker that
//! works through them is in [`drain`](super::drain)).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch, Notify};
use tower::BoxError;
use vantage_table::any::AnyTable;

use super::classify::Classifier;
use super::entry::{DeadLetter, PendingWrite};
use super::error::OutboxClosed;
use super::status::{OutboxStats, Settled, Verdict, WriteStatus, RECENT_VERDICTS};
use super::store::{Contents, Store};
use crate::backoff::BackoffPolicy;
use crate::table::IdGenerator;

/// Where the drain stands, watched by verdict waiters and flushes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// Writes settled (applied or rejected).
    settled: u64,
    /// Attempts that failed as unreachable.
    pub(super) failures: u64,
    /// The worker ended.
    pub(super) stopped: bool,
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

pub(super) type Starter = Box<dyn FnOnce(Arc<Core>, watch::Receiver<()>) + Send>;

pub(super) struct State {
    pub(super) pending: VecDeque<Arc<PendingWrite>>,
    pub(super) dead: BTreeMap<u64, DeadLetter>,
    /// Dead letters a clear took out of the file before their rejection
    /// reached `dead`: the rejection must not bring them back in memory.
    pub(super) cleared: std::collections::BTreeSet<u64>,
    pub(super) next_seq: u64,
    /// The master may already hold the head write (a crash, or an attempt
    /// whose outcome is unknown): its next attempt is a replay.
    pub(super) head_in_doubt: bool,
    pub(super) head_attempts: u32,
    pub(super) last_error: Option<String>,
    recent: VecDeque<(u64, Verdict)>,
    pub(super) accepted: u64,
    applied: u64,
    rejected: u64,
    pub(super) replays: u64,
}

pub(crate) struct Core {
    pub(crate) settings: Mutex<Settings>,
    pub(super) store: Mutex<Option<Arc<Store>>>,
    file: PathBuf,
    pub(super) state: Mutex<State>,
    pub(super) pending_len: AtomicUsize,
    pub(super) unreachable: AtomicU64,
    /// Serialises acceptances: one append at a time, in sequence order.
    pub(super) accept_lock: tokio::sync::Mutex<()>,
    /// Readers hold it (shared) across their snapshot of the pending writes
    /// and their inner read; the worker takes it (exclusively) for an
    /// instant before it starts a write it has not started before.
    pub(crate) gate: tokio::sync::RwLock<()>,
    pub(super) wake: Notify,
    pub(super) progress: watch::Sender<Progress>,
    pub(super) settled: broadcast::Sender<Settled>,
    starter: Mutex<Option<Starter>>,
    pub(super) started: AtomicBool,
    pub(super) closing: AtomicBool,
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
                cleared: Default::default(),
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

    pub(super) fn store(&self) -> Result<Arc<Store>, BoxError> {
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

    /// The outbox's settings now.
    pub(crate) fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    pub(super) fn head(&self) -> Option<(Arc<PendingWrite>, bool)> {
        let state = lock(&self.state);
        state
            .pending
            .front()
            .map(|head| (head.clone(), state.head_in_doubt))
    }

    pub(super) fn bump(&self, change: impl FnOnce(&mut Progress)) {
        self.progress.send_modify(change);
    }

    fn remember(state: &mut State, seq: u64, verdict: Verdict) {
        state.recent.push_back((seq, verdict));
        while state.recent.len() > RECENT_VERDICTS {
            state.recent.pop_front();
        }
    }

    pub(super) fn settle(&self, write: &Arc<PendingWrite>, verdict: Verdict) {
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
                    if !state.cleared.remove(&write.seq) {
                        state.dead.insert(write.seq, dead.clone());
                    }
                }
                Verdict::Forgotten | Verdict::Unsettled => {}
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

    pub(super) fn status(&self, seq: u64) -> WriteStatus {
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
