//! Error types of the [`CacheService`](super::CacheService) middleware.
//!
//! The cache layer passes its inner service's errors through as
//! [`tower::BoxError`]s. One master read may answer many readers
//! (single flight); each of them then gets a [`SharedError`] around the one
//! original, which is its [`source`](std::error::Error::source):
//!
//! ```
//! # use vantage_live_layers::cache::error::SharedError;
//! fn original(error: &tower::BoxError) -> &(dyn std::error::Error + 'static) {
//!     match error.downcast_ref::<SharedError>() {
//!         Some(shared) => shared.get_ref(),
//!         None => error.as_ref(),
//!     }
//! }
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use tower::BoxError;

/// The error of a master read that several readers shared (single flight).
///
/// Displays as the original; the original is its
/// [`source`](std::error::Error::source) and [`SharedError::get_ref`].
#[derive(Clone)]
pub struct SharedError(Arc<dyn Error + Send + Sync>);

impl SharedError {
    pub(crate) fn new(error: BoxError) -> Self {
        Self(Arc::from(error))
    }

    /// The original error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedError").field(&self.0).finish()
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for SharedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// The task running a shared master read ended without an answer: it
/// panicked, or its runtime shut down.
#[derive(Clone, Debug)]
pub struct ReadAborted {
    details: String,
}

impl ReadAborted {
    pub(crate) fn new(details: impl fmt::Display) -> Self {
        Self {
            details: details.to_string(),
        }
    }
}

impl fmt::Display for ReadAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the master read ended without an answer: {}",
            self.details
        )
    }
}

impl Error for ReadAborted {}
