//! A test-only `TableLike` around a real `AnyTable`. The data lives in the
//! real table; the wrapper only watches the writes going through it: it
//! records the order they were applied in and how many overlapped, can hold
//! each write at a gate until the test lets it pass, can panic on one id, and
//! says when its last clone is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use vantage_table::any::AnyTable;

use super::hooked::{Call, Hooked, Hooks};

/// How long a test waits for something that must happen before it calls it a
/// hang. Never waited out when the code is right.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Builds a [`Recording`] wrapper and the [`Recorder`] the test keeps.
pub struct RecordingBuilder {
    inner: AnyTable,
    gated: bool,
    panic_on: Option<String>,
}

impl RecordingBuilder {
    /// Hold every write at a gate until [`Recorder::release`] lets it pass.
    pub fn gated(mut self) -> Self {
        self.gated = true;
        self
    }

    /// Panic when inserting row `id` (before it reaches the real table).
    pub fn panic_on_insert(mut self, id: &str) -> Self {
        self.panic_on = Some(id.to_string());
        self
    }

    /// The wrapper, as an `AnyTable`, and the test's side of it.
    pub fn build(self) -> (AnyTable, Recorder) {
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        let (dropped_tx, dropped_rx) = oneshot::channel();
        let applied = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let gate = self.gated.then(|| Arc::new(Semaphore::new(0)));
        let watch = Arc::new(Watch {
            applied: applied.clone(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: max_in_flight.clone(),
            gate: gate.clone(),
            panic_on: self.panic_on,
            started: started_tx,
            dropped: Mutex::new(Some(dropped_tx)),
        });
        let recorder = Recorder {
            applied,
            max_in_flight,
            gate,
            started: started_rx,
            dropped: Some(dropped_rx),
        };
        (Hooked::wrap(self.inner, watch), recorder)
    }
}

/// The test's side of a [`Recording`] wrapper.
pub struct Recorder {
    applied: Arc<Mutex<Vec<String>>>,
    max_in_flight: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
    started: mpsc::UnboundedReceiver<String>,
    dropped: Option<oneshot::Receiver<()>>,
}

impl Recorder {
    /// The writes the real table accepted, in the order they finished, as
    /// `"op id"` (`"delete_all"` has no id).
    pub fn applied(&self) -> Vec<String> {
        self.applied.lock().unwrap().clone()
    }

    /// The most writes that were ever in the wrapper at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Let `n` more writes through the gate.
    pub fn release(&self, n: usize) {
        self.gate.as_ref().expect("a gated wrapper").add_permits(n);
    }

    /// The next write that reached the wrapper (before the gate), as
    /// `"op id"`.
    pub async fn started(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.started.recv())
            .await
            .expect("no write reached the wrapper")
            .expect("the wrapper is gone")
    }

    /// A write that reaches the wrapper within `within`, if any. With the
    /// clock paused, `within` runs out only once every task is idle: `None`
    /// then means no write can reach the wrapper until something changes.
    pub async fn next_start_within(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, self.started.recv())
            .await
            .ok()
            .flatten()
    }

    /// Wait until every clone of the wrapper has been dropped.
    pub async fn dropped(&mut self) {
        let dropped = self.dropped.take().expect("dropped() once");
        tokio::time::timeout(PATIENCE, dropped)
            .await
            .expect("the wrapper was never dropped")
            .ok();
    }
}

/// The wrapper: a real table, watched.
/// Starts a [`RecordingBuilder`].
pub struct Recording;

impl Recording {
    /// Start building a wrapper around `inner`.
    pub fn around(inner: AnyTable) -> RecordingBuilder {
        RecordingBuilder {
            inner,
            gated: false,
            panic_on: None,
        }
    }
}

impl Hooks for Watch {
    fn write<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        id: Option<&'a str>,
        apply: Call<'a, T>,
    ) -> Call<'a, T> {
        Box::pin(async move {
            let name = match id {
                Some(id) => format!("{op} {id}"),
                None => op.to_string(),
            };
            let _ = self.started.send(name.clone());
            if let Some(gate) = &self.gate {
                gate.acquire().await.expect("gate open").forget();
            }
            let _in_flight = InFlight::enter(self);
            if op == "insert" && id.is_some() && self.panic_on.as_deref() == id {
                panic!("test wrapper: inserting {name} panics");
            }
            let result = apply.await;
            if result.is_ok() {
                self.applied.lock().unwrap().push(name);
            }
            result
        })
    }
}

struct Watch {
    applied: Arc<Mutex<Vec<String>>>,
    in_flight: AtomicUsize,
    max_in_flight: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
    panic_on: Option<String>,
    started: mpsc::UnboundedSender<String>,
    dropped: Mutex<Option<oneshot::Sender<()>>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(tx) = self.dropped.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// Counts a write in flight, also when it panics.
struct InFlight<'a>(&'a Watch);

impl<'a> InFlight<'a> {
    fn enter(watch: &'a Watch) -> Self {
        let now = watch.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        watch.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(watch)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
