//! What the outbox reports about its writes: each write's verdict and
//! status, the settled-write events, the counters, and what a flush found.

use std::sync::Arc;
use std::time::SystemTime;

use super::entry::{DeadLetter, PendingWrite};
use crate::request::Response;

/// How many recent verdicts an outbox keeps in memory for
/// [`OutboxHandle::status`](super::OutboxHandle::status).
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
    /// The drain stopped (the outbox was closed, or its worker ended
    /// without finishing) with the write still pending: it stays in the
    /// file, and the next process that opens the outbox applies it.
    Unsettled,
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

/// One settled write, as
/// [`OutboxHandle::subscribe`](super::OutboxHandle::subscribe) reports it.
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

/// What [`OutboxHandle::flush_or_stall`](super::OutboxHandle::flush_or_stall)
/// found.
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
