use tower::Layer;

use super::service::WriteQueue;

/// The default [`bound`](WriteQueueLayer::bound): how many accepted writes may
/// wait in the queue before callers wait for room.
pub const DEFAULT_BOUND: usize = 256;

/// Puts a bounded FIFO write queue in front of a service.
///
/// See the [module docs](super) for what it guarantees and how to choose the
/// bound.
#[derive(Clone, Copy, Debug)]
pub struct WriteQueueLayer {
    bound: usize,
}

impl WriteQueueLayer {
    /// A write queue holding up to [`DEFAULT_BOUND`] (256) waiting writes.
    pub fn new() -> Self {
        Self {
            bound: DEFAULT_BOUND,
        }
    }

    /// A write queue holding up to `bound` waiting writes (0 is taken as 1).
    pub fn with_bound(bound: usize) -> Self {
        Self::new().bound(bound)
    }

    /// Let up to `bound` accepted writes wait in the queue; callers beyond
    /// that wait for room (back-pressure). See
    /// [choosing a bound](super#choosing-a-bound). A queue cannot hold less
    /// than one write: a bound of 0 is taken as 1.
    pub fn bound(mut self, bound: usize) -> Self {
        self.bound = bound.max(1);
        self
    }

    /// The bound queues built by this layer get.
    pub fn get_bound(&self) -> usize {
        self.bound
    }
}

impl Default for WriteQueueLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for WriteQueueLayer {
    type Service = WriteQueue<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteQueue::new(inner, self.bound)
    }
}
