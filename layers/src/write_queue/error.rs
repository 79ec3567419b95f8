//! Error types for the [`WriteQueue`](super::WriteQueue) middleware.
//!
//! The stack's error type is `VantageError`, so a queue failure reaches the
//! caller as a `VantageError` whose [`source`](std::error::Error::source) is
//! one of the markers below. Find it with a downcast:
//!
//! ```
//! # use vantage_live_layers::write_queue::error::WritePanicked;
//! fn panicked(error: &vantage_core::VantageError) -> Option<&WritePanicked> {
//!     std::error::Error::source(error)?.downcast_ref::<WritePanicked>()
//! }
//! ```
//!
//! A write the *target* rejects is not a queue failure: its caller gets the
//! target's own `VantageError`, unchanged.

use std::any::Any;
use std::fmt;

use vantage_core::{error, Context as _, VantageError};

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

/// A boxed error that is not a `VantageError`, kept as a source.
struct Boxed(tower::BoxError);

impl fmt::Debug for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Boxed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Boxed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// `message` as a `VantageError` naming `op`, with `source` attached.
fn wrap<E>(source: E, message: &'static str, op: &'static str) -> VantageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match Err::<(), E>(source).with_context(|| error!(message, op = op)) {
        Err(error) => error,
        Ok(()) => unreachable!("wrapping an Err"),
    }
}

/// The caller's error for a write that panicked.
pub(crate) fn panicked(op: &'static str, payload: &(dyn Any + Send)) -> VantageError {
    wrap(
        WritePanicked::from_payload(payload),
        "a queued write panicked; the queue goes on with later writes",
        op,
    )
}

/// The caller's error for a write the closed queue could not answer.
pub(crate) fn closed(op: &'static str) -> VantageError {
    wrap(
        QueueClosed::new(),
        "the write queue closed before this write's outcome was known",
        op,
    )
}

/// The caller's error for an error that came back through tower's `Buffer`:
/// the inner service's own `VantageError` passes through unchanged; the
/// buffer's `Closed` becomes [`QueueClosed`]; anything else is wrapped.
pub(crate) fn from_buffer(op: &'static str, error: tower::BoxError) -> VantageError {
    let error = match error.downcast::<VantageError>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    if error.is::<tower::buffer::error::Closed>() {
        return closed(op);
    }
    wrap(Boxed(error), "the write queue failed", op)
}
