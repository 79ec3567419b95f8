use std::fmt;
use std::path::Path;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tower::{BoxError, Layer, Service};
use vantage_table::any::AnyTable;

use super::classify::{classify, Classifier, Failure};
use super::core::{Core, Settings};
use super::drain::starter;
use super::error::OpenOutboxError;
use super::handle::OutboxHandle;
use super::service::Outbox;
use super::store::Store;
use crate::backoff::BackoffPolicy;
use crate::request::{Request, Response};
use crate::table::{uuid_v7_id, IdGenerator};

/// The default [`max_pending`](OutboxLayer::max_pending): how many writes may
/// wait for the master before a write is refused.
pub const DEFAULT_MAX_PENDING: usize = 10_000;

/// Puts a durable outbox in front of a service: writes are accepted into a
/// local redb file and applied to the service in the background, in order;
/// reads show the pending writes.
///
/// See the [module docs](super) for what it guarantees. The layer is the
/// opened outbox: clones (and every service it builds) share the file, the
/// pending writes and the drain worker. One outbox file belongs to one
/// master table.
#[derive(Clone)]
pub struct OutboxLayer {
    handle: OutboxHandle,
}

impl OutboxLayer {
    /// Open (or create) the outbox in `folder` (the file
    /// [`FILE_NAME`](super::FILE_NAME), `outbox.redb`), creating the folder
    /// if needed, and read every pending write and dead letter in it.
    ///
    /// A damaged, truncated or foreign file is an
    /// [`OpenOutboxError::Corrupt`] naming it; nothing is sent to any
    /// master and the file is left as it is. A file open elsewhere (this
    /// process or another: redb locks it) is
    /// [`OpenOutboxError::AlreadyOpen`].
    ///
    /// This does blocking file I/O; from async code, call it at start-up or
    /// inside `spawn_blocking`. The drain starts with the first request
    /// through a service of the layer (or [`OutboxHandle::start`]).
    pub fn open(folder: impl AsRef<Path>) -> Result<Self, OpenOutboxError> {
        let (store, contents) = Store::open(folder.as_ref())?;
        let settings = Settings {
            max_pending: DEFAULT_MAX_PENDING,
            ids: Arc::new(uuid_v7_id),
            classify: Arc::new(classify),
            policy: BackoffPolicy::default(),
            verify: None,
            invalidator: None,
        };
        let (core, alive, shutdown) = Core::new(store, contents, settings);
        tracing::info!(
            file = %core.file().display(),
            pending = core.stats().pending,
            dead_letters = core.stats().dead_letters,
            "outbox opened"
        );
        Ok(Self {
            handle: OutboxHandle {
                core,
                _alive: alive,
                shutdown,
            },
        })
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.handle
            .core
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse writes once `max` are pending (at least 1): the next write
    /// fails with [`OutboxFull`](super::error::OutboxFull), and nothing is
    /// stored. See [choosing the maximum](super#choosing-the-maximum).
    /// The setting is the outbox's: it applies to every clone.
    pub fn max_pending(self, max: usize) -> Self {
        self.settings().max_pending = max.max(1);
        self
    }

    /// The maximum of pending writes.
    pub fn get_max_pending(&self) -> usize {
        self.settings().max_pending
    }

    /// Tell an unreachable master from a rejection with `classify` instead
    /// of [`classify`](super::classify()) (see it for the default rule).
    /// Takes effect when the drain starts.
    pub fn classify(
        self,
        classify: impl Fn(&(dyn std::error::Error + 'static)) -> Failure + Send + Sync + 'static,
    ) -> Self {
        let classify: Classifier = Arc::new(classify);
        self.settings().classify = classify;
        self
    }

    /// The first retry delay's ceiling after the master is found unreachable
    /// (default 50 ms, at least 1 ms); delays double up to
    /// [`max_backoff`](Self::max_backoff), with jitter. Takes effect when
    /// the drain starts.
    pub fn initial_backoff(self, delay: Duration) -> Self {
        {
            let mut settings = self.settings();
            settings.policy = settings.policy.with_initial(delay);
        }
        self
    }

    /// The cap on retry delays (default 5 s). Takes effect when the drain
    /// starts.
    pub fn max_backoff(self, delay: Duration) -> Self {
        {
            let mut settings = self.settings();
            settings.policy = settings.policy.with_max(delay);
        }
        self
    }

    /// Recognise replayed inserts by reading `table` (the table writes go
    /// to) directly. Without it the check reads through the inner service,
    /// which may answer from a cache. Takes effect when the drain starts.
    pub fn verify_table(self, table: AnyTable) -> Self {
        self.settings().verify = Some(table);
        self
    }

    /// Invalidate through `invalidator` (a [`CacheLayer`](crate::CacheLayer)'s
    /// below this layer) when a replayed insert is found already applied:
    /// the attempt that landed never answered, so the cache layer did not
    /// invalidate for it, and the replay is not sent again. Every other
    /// write, replays included, goes through the inner service and
    /// invalidates as usual. Takes effect when the drain starts.
    pub fn invalidator(self, invalidator: crate::cache::Invalidator) -> Self {
        self.settings().invalidator = Some(invalidator);
        self
    }

    /// Generate the ids of `insert_return_id` writes with `ids` (default:
    /// UUID v7). The id is generated, and stored, when the write is
    /// accepted.
    pub fn id_generator(self, ids: IdGenerator) -> Self {
        self.settings().ids = ids;
        self
    }

    /// The handle on this outbox: pending writes, dead letters, verdicts,
    /// counters.
    pub fn handle(&self) -> &OutboxHandle {
        &self.handle
    }
}

impl fmt::Debug for OutboxLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxLayer")
            .field("file", &self.handle.file())
            .field("max_pending", &self.get_max_pending())
            .finish()
    }
}

impl<S> Layer<S> for OutboxLayer
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Service = Outbox<S>;

    /// The service over `inner`. The drain applies writes through the last
    /// service built before it starts (it starts with the first request).
    fn layer(&self, inner: S) -> Self::Service {
        self.handle.core.set_starter(starter(inner.clone()));
        Outbox::new(inner, self.handle.clone())
    }
}
