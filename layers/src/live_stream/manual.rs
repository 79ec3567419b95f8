use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{LiveEvent, LiveStream};

/// A [`LiveStream`] the caller pushes events into: for tests, and for apps
/// that learn about changes some other way (a push notification, a message
/// from another window).
///
/// Every subscription gets every event pushed after it subscribed, in push
/// order. Clones share their subscribers: push through one, every
/// subscription of every clone receives it.
///
/// ```
/// use futures_util::StreamExt;
/// use vantage_live_layers::{LiveEvent, LiveStream, ManualLiveStream};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let source = ManualLiveStream::new();
/// let mut events = source.subscribe();
/// assert_eq!(source.push(LiveEvent::updated("ada")), 1);
/// assert_eq!(events.next().await, Some(LiveEvent::updated("ada")));
/// drop(events);
/// assert_eq!(source.push(LiveEvent::Changed), 0);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ManualLiveStream {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<LiveEvent>>>>,
}

impl ManualLiveStream {
    /// A stream with no subscribers yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn subscribers(&self) -> MutexGuard<'_, Vec<mpsc::UnboundedSender<LiveEvent>>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Send `event` to every live subscription. Returns how many received it:
    /// subscriptions whose stream was dropped are not counted (and are
    /// forgotten).
    ///
    /// "Received" means queued on the subscription, in order; the consumer
    /// handles it when it next polls its stream.
    pub fn push(&self, event: LiveEvent) -> usize {
        let mut subscribers = self.subscribers();
        subscribers.retain(|tx| tx.send(event.clone()).is_ok());
        subscribers.len()
    }

    /// How many subscriptions are live (their streams not dropped).
    pub fn subscriber_count(&self) -> usize {
        let mut subscribers = self.subscribers();
        subscribers.retain(|tx| !tx.is_closed());
        subscribers.len()
    }

    /// End every current subscription, as a lost connection would: each of
    /// their streams yields the events already pushed, then ends. Returns how
    /// many live subscriptions were ended. Later subscriptions are not
    /// affected.
    pub fn disconnect(&self) -> usize {
        let ended: Vec<_> = std::mem::take(&mut *self.subscribers());
        ended.iter().filter(|tx| !tx.is_closed()).count()
    }
}

impl LiveStream for ManualLiveStream {
    fn subscribe(&self) -> BoxStream<'static, LiveEvent> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.subscribers().push(tx);
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }
}

impl fmt::Debug for ManualLiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualLiveStream")
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}
