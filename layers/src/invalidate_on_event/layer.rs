use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::service::InvalidateOnEvent;
use super::status::EventStatus;
use super::task::Task;
use crate::backoff::BackoffPolicy;
use crate::cache::Invalidator;
use crate::live_stream::LiveStream;

/// Consumes a [`LiveStream`] in a background task and drops a cache_key on
/// every event. See [the module docs](super) for the guarantees.
///
/// Clones of the layer, and every service they build, share one task.
#[derive(Clone)]
pub struct InvalidateOnEventLayer {
    stream: Arc<dyn LiveStream>,
    invalidator: Invalidator,
    policy: BackoffPolicy,
    task: Arc<Task>,
}

impl InvalidateOnEventLayer {
    /// Drop `invalidator`'s cache_key on every event of `stream` (get the
    /// invalidator from the stack's
    /// [`CacheLayer::invalidator`](crate::CacheLayer::invalidator)).
    pub fn new(stream: Arc<dyn LiveStream>, invalidator: Invalidator) -> Self {
        Self::with_policy(stream, invalidator, BackoffPolicy::default())
    }

    fn with_policy(
        stream: Arc<dyn LiveStream>,
        invalidator: Invalidator,
        policy: BackoffPolicy,
    ) -> Self {
        let task = Arc::new(Task::new(stream.clone(), invalidator.clone(), policy));
        Self {
            stream,
            invalidator,
            policy,
            task,
        }
    }

    /// The ceiling of the first reconnect delay (default
    /// [`DEFAULT_INITIAL_BACKOFF`](super::DEFAULT_INITIAL_BACKOFF), 50 ms; at
    /// least 1 ms). Each further delay doubles the ceiling up to
    /// [`max_backoff`](Self::max_backoff).
    ///
    /// Returns a layer with a task of its own: set it before building
    /// services.
    pub fn initial_backoff(self, delay: Duration) -> Self {
        let policy = self.policy.with_initial(delay);
        Self::with_policy(self.stream, self.invalidator, policy)
    }

    /// The cap on reconnect delays (default
    /// [`DEFAULT_MAX_BACKOFF`](super::DEFAULT_MAX_BACKOFF), 5 s; never below
    /// the initial delay). A subscription that stays up this long resets the
    /// delays.
    ///
    /// Returns a layer with a task of its own: set it before building
    /// services.
    pub fn max_backoff(self, delay: Duration) -> Self {
        let policy = self.policy.with_max(delay);
        Self::with_policy(self.stream, self.invalidator, policy)
    }

    /// Watch the event task.
    pub fn status(&self) -> EventStatus {
        self.task.status()
    }

    /// Start the event task now, on the current tokio runtime, instead of
    /// with the first request through a service of this layer. Does nothing
    /// if it runs already, or outside a runtime.
    pub fn start(&self) {
        self.task.start();
    }

    /// The cache_key the events invalidate.
    pub fn cache_key(&self) -> &str {
        self.invalidator.cache_key()
    }
}

impl<S> Layer<S> for InvalidateOnEventLayer {
    type Service = InvalidateOnEvent<S>;

    /// Builds the service; starts nothing (the first request starts the
    /// event task).
    fn layer(&self, inner: S) -> Self::Service {
        InvalidateOnEvent::new(inner, self.task.clone())
    }
}

impl fmt::Debug for InvalidateOnEventLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidateOnEventLayer")
            .field("cache_key", &self.cache_key())
            .field("initial_backoff", &self.policy.initial)
            .field("max_backoff", &self.policy.max)
            .field("started", &self.task.is_started())
            .finish()
    }
}
