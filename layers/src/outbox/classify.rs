//! Telling an unreachable master from a master that said no.

use std::error::Error;
use std::sync::Arc;

/// What a failed attempt to apply a write means for the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The master was not reached, or may not have finished (a refused or
    /// dropped connection, a timeout, a busy database): the write stays at
    /// the head of the outbox and is retried with backoff. The master may
    /// have applied it, so the retry is a replay (see the module docs).
    Unreachable,
    /// The master answered and refused the write (a constraint, a missing
    /// row, a type it does not accept): the write moves to the dead-letter
    /// list and the writes behind it go on.
    Rejected,
}

/// A classification function: how the outbox tells the two [`Failure`]s
/// apart. [`classify`] is the default; supply your own with
/// [`OutboxLayer::classify`](super::OutboxLayer::classify).
pub type Classifier = Arc<dyn Fn(&(dyn Error + 'static)) -> Failure + Send + Sync>;

/// Words in an error's text that mean the master was not reached or did not
/// finish. Matched case-insensitively anywhere in the error or its sources.
///
/// The Vantage SQL drivers keep sqlx's error as text (`"PostgreSQL query
/// failed (details: \"...\")"`), so the text is what there is to read. These
/// are sqlx's own messages for its transport failures (`Io`, `Tls`,
/// `PoolTimedOut`, `PoolClosed`, `WorkerCrashed`, `Protocol`), the operating
/// system's for refused, reset and broken connections, PostgreSQL's for a
/// server shutting down or out of connections, and SQLite's for a locked or
/// busy database.
pub const UNREACHABLE_MARKERS: &[&str] = &[
    "error communicating with database",
    "error occurred while attempting to establish a tls connection",
    "pool timed out",
    "closed pool",
    "crashed background worker",
    "encountered unexpected or invalid data",
    "connection refused",
    "connection reset",
    "connection aborted",
    "broken pipe",
    "unexpected end of file",
    "unexpected eof",
    "not connected",
    "network is unreachable",
    "no route to host",
    "host is unreachable",
    "timed out",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "too many clients",
    "database is locked",
    "database table is locked",
    "(code: 5)",
    "(code: 6)",
];

/// The default rule, in this order:
///
/// 1. an error in the chain (the error or any [`source`](Error::source)) is
///    a [`std::io::Error`], tower's `Elapsed` (timeout) or `Overloaded`
///    (load shed), or a closed `Buffer`: **unreachable**;
/// 2. the text of an error in the chain contains one of
///    [`UNREACHABLE_MARKERS`]: **unreachable**;
/// 3. anything else: **rejected**. The master answered, with an error: a
///    constraint (`UNIQUE constraint failed`, `duplicate key value`), a
///    missing row (`Cannot patch missing row`), a value it does not take.
///
/// Why an unrecognised error is a rejection: it came back from a master
/// that was reached, and holding it at the head would stop every write
/// behind it for good. A rejected write is not lost: it waits in the
/// dead-letter list, with its error, for the app to read. If your master
/// reports transient failures in words not listed here, wrap this function:
///
/// ```
/// # use std::sync::Arc;
/// use vantage_live_layers::outbox::{classify, Failure};
/// let mine = Arc::new(|error: &(dyn std::error::Error + 'static)| {
///     if error.to_string().contains("try again later") {
///         Failure::Unreachable
///     } else {
///         classify(error)
///     }
/// });
/// # let _: vantage_live_layers::outbox::Classifier = mine;
/// ```
pub fn classify(error: &(dyn Error + 'static)) -> Failure {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<std::io::Error>()
            || error.is::<tower::timeout::error::Elapsed>()
            || error.is::<tower::load_shed::error::Overloaded>()
            || error.is::<tower::buffer::error::Closed>()
        {
            return Failure::Unreachable;
        }
        let text = error.to_string().to_lowercase();
        if UNREACHABLE_MARKERS.iter().any(|m| text.contains(m)) {
            return Failure::Unreachable;
        }
        next = error.source();
    }
    Failure::Rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_texts() {
        let unreachable = [
            "PostgreSQL query failed (details: \"error communicating with database: Connection refused (os error 111)\")",
            "SQLite query failed (details: \"attempted to acquire a connection on a closed pool\")",
            "PostgreSQL query failed (details: \"pool timed out while waiting for an open connection\")",
            "SQLite query failed (details: \"error returned from database: (code: 5) database is locked\")",
        ];
        for text in unreachable {
            let e = vantage_core::VantageError::other(text);
            assert_eq!(classify(&e), Failure::Unreachable, "{text}");
        }
        let rejected = [
            "SQLite query failed (details: \"error returned from database: (code: 2067) UNIQUE constraint failed: product.id\")",
            "PostgreSQL query failed (details: \"error returned from database: duplicate key value violates unique constraint\")",
            "Cannot patch missing row (id: \"x\")",
        ];
        for text in rejected {
            let e = vantage_core::VantageError::other(text);
            assert_eq!(classify(&e), Failure::Rejected, "{text}");
        }
    }

    #[test]
    fn io_errors_in_the_chain() {
        let io = std::io::Error::other("anything");
        let e: vantage_core::VantageError = io.into();
        assert_eq!(classify(&e), Failure::Unreachable);
        assert_eq!(
            classify(&tower::timeout::error::Elapsed::new()),
            Failure::Unreachable
        );
    }
}
