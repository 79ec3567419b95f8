//! Error types for the [`WriteQueue`](super::WriteQueue) middleware.
//!
//! The queue's errors are [`BoxError`]s, as tower's are: a failure of the
//! queue itself is one of the markers below, found with a downcast:
//!
//! ```
//! # use vantage_live_layers::write_queue::error::WritePanicked;
//! fn panicked(error: &tower::BoxError) -> Option<&WritePanicked> {
//!     error.downcast_ref::<WritePanicked>()
//! }
//! ```
//!
//! A write the *target* rejects is not a queue failure: its caller gets the
//! target's own error, unchanged.

use std::any::Any;
use std::fmt;

use tower::BoxError;

/// A queued write panicked while it was applied.
///
/// The panic was caught: the queue goes on with later writes. The write may
/// or may not have reached the target before it panicked.
#[derive(Clone, Debug)]
pub struct WritePanicked {
    message: String,
}

impl WritePanicked {
    /// Build from a panic payload (as `catch_unwind` returns it).
    pub(crate) fn from_payload(payload: &(dyn Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic with a non-text payload".to_string()
        };
        Self { message }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for WritePanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the write panicked: {}", self.message)
    }
}

impl std::error::Error for WritePanicked {}

/// The write queue closed before the write's outcome was known.
///
/// The queue's worker and its writes run as tasks on the tokio runtime of the
/// first write; this is what callers see once that runtime has shut down. A
/// write refused this way at the door was never applied; a write that was in
/// flight when the runtime stopped may or may not have been.
#[derive(Clone, Default)]
pub struct QueueClosed {
    _p: (),
}

impl QueueClosed {
    /// A new marker.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for QueueClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("QueueClosed")
    }
}

impl fmt::Display for QueueClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("the write queue is closed (its tokio runtime shut down)")
    }
}

impl std::error::Error for QueueClosed {}

/// The caller's error for a write that panicked.
pub(crate) fn panicked(op: &'static str, payload: &(dyn Any + Send)) -> BoxError {
    let _ = op;
    Box::new(WritePanicked::from_payload(payload))
}

/// The caller's error for a write the closed queue could not answer.
pub(crate) fn closed(op: &'static str) -> BoxError {
    let _ = op;
    Box::new(QueueClosed::new())
}

/// The caller's error for an error that came back through tower's `Buffer`:
/// the inner service's own error passes through unchanged; the buffer's
/// `Closed` becomes [`QueueClosed`].
pub(crate) fn from_buffer(op: &'static str, error: BoxError) -> BoxError {
    if error.is::<tower::buffer::error::Closed>() {
        return closed(op);
    }
    error
}
