//! Turning a stack's errors into `VantageError`s.
//!
//! The layers pass errors on as tower does, as [`BoxError`]s, so that
//! tower's own middleware (`timeout`, `limit`, `load_shed`, `retry`, ...)
//! fits anywhere in a stack. [`into_vantage_error`] is what a `LiveTable`
//! (or any caller that speaks Vantage) applies at the edge: the master's own
//! `VantageError` comes back unchanged, anything else becomes a
//! `VantageError` that says plainly what happened, with the original as its
//! [`source`](std::error::Error::source) so that it can still be found with a
//! downcast.

use std::error::Error;
use std::fmt;

use tower::BoxError;
use vantage_core::{error, Context as _, VantageError};

use crate::cache::error::{ReadAborted, SharedError};
use crate::write_queue::error::{QueueClosed, WritePanicked};

/// The `VantageError` a caller sees for `error`.
///
/// - a `VantageError` (the master's) is returned as it is;
/// - a [`SharedError`] (one master read shared by several readers) stands
///   for its original: a `VantageError` original comes back as an equal
///   error (same message and kind), anything else as below;
/// - tower's `Elapsed` (timeout), `Overloaded` (load shed) and a closed
///   `Buffer`, and this crate's markers, become errors that say so;
/// - anything else becomes "the request failed: ...".
///
/// ```
/// # use vantage_live_layers::error::into_vantage_error;
/// let error: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
/// let error = into_vantage_error(error);
/// // "a timeout layer gave up waiting: request timed out"
/// assert_eq!(error.to_string().matches("timed out").count(), 1);
/// ```
pub fn into_vantage_error(error: BoxError) -> VantageError {
    let error = match error.downcast::<VantageError>() {
        Ok(error) => return *error,
        Err(error) => error,
    };
    if let Some(shared) = error.downcast_ref::<SharedError>() {
        if let Some(original) = shared.get_ref().downcast_ref::<VantageError>() {
            return copy(original);
        }
    }
    let message = describe(&*error);
    // Known errors become the source as themselves, so that
    // `source().downcast_ref::<T>()` finds them; others are kept boxed.
    let error = match attach::<SharedError>(error, message) {
        Ok(done) => return done,
        Err(error) => error,
    };
    let error = match attach::<WritePanicked>(error, message) {
        Ok(done) => return done,
        Err(error) => error,
    };
    let error = match attach::<QueueClosed>(error, message) {
        Ok(done) => return done,
        Err(error) => error,
    };
    let error = match attach::<ReadAborted>(error, message) {
        Ok(done) => return done,
        Err(error) => error,
    };
    let error = match attach::<tower::timeout::error::Elapsed>(error, message) {
        Ok(done) => return done,
        Err(error) => error,
    };
    let error = match attach::<tower::load_shed::error::Overloaded>(error, message) {
        Ok(done) => return done,
        Err(error) => error,
    };
    wrap(Source(error), message)
}

/// `message` with `error` as its source, if `error` is a `T`.
fn attach<T>(error: BoxError, message: &'static str) -> Result<VantageError, BoxError>
where
    T: Error + Send + Sync + 'static,
{
    error.downcast::<T>().map(|error| wrap(*error, message))
}

fn wrap<E: Error + Send + Sync + 'static>(source: E, message: &'static str) -> VantageError {
    match Err::<(), E>(source).with_context(|| error!(message)) {
        Err(error) => error,
        Ok(()) => unreachable!("wrapping an Err"),
    }
}

/// A boxed error kept as a `VantageError`'s source. Its own source is the
/// boxed error itself, so that walking the chain finds (and downcasts to)
/// it.
struct Source(BoxError);

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Source {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// What happened, for the markers we know.
fn describe(error: &(dyn Error + 'static)) -> &'static str {
    let error = match error.downcast_ref::<SharedError>() {
        Some(shared) => shared.get_ref() as &(dyn Error + 'static),
        None => error,
    };
    if error.is::<tower::timeout::error::Elapsed>() {
        // The source's own text ("request timed out", "service
        // overloaded") follows: say who gave up, not the same thing twice.
        "a timeout layer gave up waiting"
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        "a load-shedding layer refused the request"
    } else if error.is::<tower::buffer::error::Closed>() || error.is::<QueueClosed>() {
        "the write queue is closed"
    } else if error.is::<WritePanicked>() {
        "a queued write panicked; the queue goes on with later writes"
    } else if error.is::<ReadAborted>() {
        "the master read ended without an answer"
    } else {
        "the request failed"
    }
}

/// An error equal to `original`: same message, context and kind.
fn copy(original: &VantageError) -> VantageError {
    use vantage_core::ErrorKind;
    let mut copy = VantageError::other(original.to_string());
    copy = match original.kind() {
        ErrorKind::Unsupported => copy.is_unsupported(),
        ErrorKind::Unimplemented => copy.is_unimplemented(),
        ErrorKind::IncorrectUsage => copy.is_incorrect_usage(),
        _ => copy,
    };
    copy
}
