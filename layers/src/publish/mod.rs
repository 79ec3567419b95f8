//! Telling other processes about every acknowledged write.
//!
//! [`PublishInvalidationsLayer`] hands each write that succeeded to a
//! [`Publisher`] (a message bus: `NatsPublisher` in `vantage-live`, or your
//! own) as a [`LiveEvent`] under its cache_key, before the write answers.
//! Other processes feed the bus back in as a [`LiveStream`](crate::LiveStream)
//! through [`InvalidateOnEventLayer`](crate::InvalidateOnEventLayer), which
//! drops the cache_key there: this is the invalidation fan-out that keeps
//! per-process caches (a `MemCache`, or the tier 1 of a `TieredCache`)
//! coherent across processes. Reads pass straight through, unboxed.
//!
//! Unlike the cache layer's own invalidation, which reaches only the stacks
//! sharing a backend, this one reaches every process listening on the bus.
//!
//! # Guarantees
//!
//! - **Every acknowledged write is published**, once, after the layers
//!   below it answered (with the cache layer below: after the local
//!   invalidation) and before the write's response is returned, so a write
//!   acknowledged to its caller has been handed to the bus. A write that
//!   fails is not published.
//! - **Publishing never fails a write.** A publish that fails or takes longer
//!   than the [timeout](PublishInvalidationsLayer::timeout) (default
//!   [`DEFAULT_PUBLISH_TIMEOUT`], 1 s) is a `warn!`; the write still
//!   answers with its own result. Listeners then learn of the write only
//!   when their own safety nets act (a live stream that lost messages drops
//!   the cache_key when it reconnects; a tier-1 time to live).
//! - **No loops.** Events coming back from the bus are handled by the event
//!   layer as invalidations, never as writes: nothing is re-published.
//!
//! # Order
//!
//! Put it between the write queue and the cache layer: it then runs on the
//! write's detached task, after the write's invalidation and before its
//! reply (`LiveTable::with_publisher` does this).
//!
//! ```
//! # use std::sync::Arc;
//! # use vantage_live_layers::*;
//! # use vantage_live_layers::publish::{Publisher, PublishInvalidationsLayer};
//! # async fn demo(master: vantage_table::any::AnyTable, bus: Arc<dyn Publisher>) {
//! use tower::ServiceBuilder;
//! let stack = ServiceBuilder::new()
//!     .layer(WriteQueueLayer::new())
//!     .layer(PublishInvalidationsLayer::new(bus, "clients"))
//!     .layer(CacheLayer::new(Arc::new(NoCache), "clients"))
//!     .service(TableService::new(master));
//! # drop(stack); }
//! ```

mod future;
mod service;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tower::{BoxError, Layer};

pub use self::future::ResponseFuture;
pub use self::service::PublishInvalidations;
use crate::live_stream::LiveEvent;
use crate::request::{Response, WriteRequest};

/// How long a publish may take before the layer gives up on it: 1 s.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Where [`PublishInvalidationsLayer`] sends the writes it saw succeed.
pub trait Publisher: Send + Sync {
    /// Tell the other processes that `cache_key` changed, as `event` says.
    /// The future resolves when the bus has taken the message (or failed).
    fn publish(
        &self,
        cache_key: &str,
        event: LiveEvent,
    ) -> BoxFuture<'static, Result<(), BoxError>>;
}

/// The event a successful write stands for: the row it touched, or
/// [`LiveEvent::Changed`] for a delete-all.
pub fn write_event(write: &WriteRequest, response: &Response) -> LiveEvent {
    match write {
        WriteRequest::Insert { id, .. } => LiveEvent::inserted(id.clone()),
        WriteRequest::Replace { id, .. } | WriteRequest::Patch { id, .. } => {
            LiveEvent::updated(id.clone())
        }
        WriteRequest::Delete { id } => LiveEvent::deleted(id.clone()),
        WriteRequest::InsertReturnId { .. } => match response {
            Response::Id(id) => LiveEvent::inserted(id.clone()),
            _ => LiveEvent::Changed,
        },
        _ => LiveEvent::Changed,
    }
}

pub(crate) struct Shared {
    pub(crate) publisher: Arc<dyn Publisher>,
    pub(crate) cache_key: String,
    pub(crate) timeout: Duration,
}

/// Publishes every write that succeeded below it (see the
/// [module docs](self)).
#[derive(Clone)]
pub struct PublishInvalidationsLayer {
    shared: Option<Arc<Shared>>,
}

impl PublishInvalidationsLayer {
    /// Publish the writes of `cache_key` to `publisher`.
    pub fn new(publisher: Arc<dyn Publisher>, cache_key: impl Into<String>) -> Self {
        Self::optional(Some(publisher), cache_key)
    }

    /// Publish to `publisher` if there is one; without one the services
    /// pass everything through.
    pub fn optional(publisher: Option<Arc<dyn Publisher>>, cache_key: impl Into<String>) -> Self {
        let cache_key = cache_key.into();
        Self {
            shared: publisher.map(|publisher| {
                Arc::new(Shared {
                    publisher,
                    cache_key,
                    timeout: DEFAULT_PUBLISH_TIMEOUT,
                })
            }),
        }
    }

    /// Give up on a publish after `timeout` (default
    /// [`DEFAULT_PUBLISH_TIMEOUT`]); the write still answers.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Some(shared) = &self.shared {
            self.shared = Some(Arc::new(Shared {
                publisher: shared.publisher.clone(),
                cache_key: shared.cache_key.clone(),
                timeout,
            }));
        }
        self
    }

    /// Whether there is a publisher.
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }
}

impl<S> Layer<S> for PublishInvalidationsLayer {
    type Service = PublishInvalidations<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PublishInvalidations::new(inner, self.shared.clone())
    }
}

impl fmt::Debug for PublishInvalidationsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishInvalidationsLayer")
            .field("cache_key", &self.shared.as_ref().map(|s| &s.cache_key))
            .finish()
    }
}
