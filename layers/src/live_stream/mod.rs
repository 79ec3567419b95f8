//! Event sources: the [`LiveStream`] trait, the [`LiveEvent`]s it yields, and
//! [`ManualLiveStream`], a source the caller pushes events into.
//!
//! A live stream tells a cache that the master changed without anyone asking
//! the master. [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer)
//! consumes one and drops the cache_key on every event.
//!
//! # Writing a source
//!
//! [`LiveStream::subscribe`] returns a fresh stream of events each time it is
//! called. A stream has no error items: a source that loses its connection, or
//! cannot make one, *ends the stream*. The consumer then subscribes again
//! (with backoff) and treats the gap as "anything may have changed". A source
//! that needs time to start listening (a network round trip) should yield
//! [`LiveEvent::Changed`] once it is listening, since changes made before then
//! were not heard.

mod manual;

use std::fmt;

use futures_util::stream::BoxStream;

pub use self::manual::ManualLiveStream;

/// A source of [`LiveEvent`]s about one master.
///
/// Each call to [`subscribe`](LiveStream::subscribe) starts an independent
/// subscription. The returned stream ends when the subscription is lost; it
/// never yields errors.
pub trait LiveStream: Send + Sync {
    /// Start a subscription. Events that happen from now on (for a remote
    /// source: from the moment it is listening) are yielded in the order the
    /// source saw them.
    fn subscribe(&self) -> BoxStream<'static, LiveEvent>;
}

/// Something changed in the master.
///
/// The row-level variants name the row; [`LiveEvent::Changed`] is for sources
/// that cannot tell (a bulk change, a reconnect, a payload that could not be
/// read). v1 consumers treat every event the same way: they drop the whole
/// cache_key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LiveEvent {
    /// Something changed; which rows is unknown.
    Changed,
    /// Row `id` was inserted.
    Inserted {
        /// The row's id.
        id: String,
    },
    /// Row `id` was updated.
    Updated {
        /// The row's id.
        id: String,
    },
    /// Row `id` was deleted.
    Deleted {
        /// The row's id.
        id: String,
    },
}

impl LiveEvent {
    /// `Inserted { id }`.
    pub fn inserted(id: impl Into<String>) -> Self {
        LiveEvent::Inserted { id: id.into() }
    }

    /// `Updated { id }`.
    pub fn updated(id: impl Into<String>) -> Self {
        LiveEvent::Updated { id: id.into() }
    }

    /// `Deleted { id }`.
    pub fn deleted(id: impl Into<String>) -> Self {
        LiveEvent::Deleted { id: id.into() }
    }

    /// The event's kind as logs show it: `changed`, `inserted`, `updated` or
    /// `deleted`.
    pub fn kind(&self) -> &'static str {
        match self {
            LiveEvent::Changed => "changed",
            LiveEvent::Inserted { .. } => "inserted",
            LiveEvent::Updated { .. } => "updated",
            LiveEvent::Deleted { .. } => "deleted",
        }
    }

    /// The row the event is about, if it names one.
    pub fn id(&self) -> Option<&str> {
        match self {
            LiveEvent::Changed => None,
            LiveEvent::Inserted { id } | LiveEvent::Updated { id } | LiveEvent::Deleted { id } => {
                Some(id)
            }
        }
    }
}

impl fmt::Display for LiveEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{} {id}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}
