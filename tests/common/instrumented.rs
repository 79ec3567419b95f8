//! A thin, test-only `TableLike` around a real `AnyTable`: it counts master
//! reads and can be switched to failing. The data stays in the real table.
//!
//! ```ignore
//! let (master, probe) = Instrumented::wrap(seeded.table.clone());
//! let live = LiveTable::new(master, "products", cache);
//! live.list_values().await?;          // probe.reads() == 1
//! probe.set_down(true);               // every master read/write now fails
//! let mut held = probe.hold_reads(1); // the next read stops after fetching
//! held.fetched().await;               // ...it has its (old) rows now
//! held.release(1);                    // ...and goes on
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Barrier, Semaphore};
use vantage_core::Result;
use vantage_table::any::AnyTable;

use super::hooked::{Call, Hooked, Hooks};

/// The error text every read and write returns while the probe is down.
pub const DOWN: &str = "master is down (test switch)";

/// What the test sees of an [`Instrumented`] table (shared by all its clones).
#[derive(Debug, Default)]
pub struct Probe {
    /// Master reads attempted: `list_values`, `get_value`, `get_some_value`,
    /// `get_count` (counted even while down).
    pub reads: AtomicUsize,
    /// While set, every read and write fails with [`DOWN`].
    pub down: AtomicBool,
    /// If set, every read waits on this barrier before touching the master.
    gate: Mutex<Option<Arc<Barrier>>>,
    /// If set, the next reads stop after the master answered, until released.
    hold: Mutex<Option<Hold>>,
}

/// Reads still to hold, and how the test hears of and releases them.
#[derive(Debug)]
struct Hold {
    remaining: usize,
    fetched: mpsc::UnboundedSender<()>,
    release: Arc<Semaphore>,
}

/// The test's side of [`Probe::hold_reads`].
#[derive(Debug)]
pub struct Held {
    fetched: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

impl Held {
    /// Wait until one more held read has its answer from the master (rows or
    /// error) and is waiting to return it.
    pub async fn fetched(&mut self) {
        tokio::time::timeout(super::PATIENCE, self.fetched.recv())
            .await
            .expect("no held read reached the master")
            .expect("the probe is gone");
    }

    /// Let `n` held reads return their answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

impl Probe {
    /// Master reads so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Switch the master to failing (`true`) or back to working.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// From now on, each read waits until `n` reads are waiting together,
    /// then all go on. A read path that serialises reads deadlocks on this
    /// (wrap the test in a timeout).
    pub fn gate_reads(&self, n: usize) {
        *self.gate.lock().unwrap() = Some(Arc::new(Barrier::new(n)));
    }

    /// Hold the next `n` reads after the master answered them, before they
    /// return: the read has its rows (from before whatever the test does
    /// next) and waits until [`Held::release`].
    pub fn hold_reads(&self, n: usize) -> Held {
        let (tx, rx) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        *self.hold.lock().unwrap() = Some(Hold {
            remaining: n,
            fetched: tx,
            release: release.clone(),
        });
        Held {
            fetched: rx,
            release,
        }
    }

    /// Stop gating reads.
    pub fn ungate(&self) {
        *self.gate.lock().unwrap() = None;
    }

    /// One master read: counted, gated, failing while down, held if asked.
    async fn observe_read<T>(&self, call: Call<'_, T>) -> Result<T> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(barrier) = gate {
            barrier.wait().await;
        }
        let result = match self.check() {
            Ok(()) => call.await,
            Err(e) => Err(e),
        };
        let held = {
            let mut hold = self.hold.lock().unwrap();
            match hold.as_mut() {
                Some(h) if h.remaining > 0 => {
                    h.remaining -= 1;
                    let _ = h.fetched.send(());
                    Some(h.release.clone())
                }
                _ => None,
            }
        };
        if let Some(release) = held {
            release.acquire().await.expect("never closed").forget();
        }
        result
    }

    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(vantage_core::error!(DOWN))
        } else {
            Ok(())
        }
    }
}

/// A real `AnyTable` behind a [`Probe`].
pub struct Instrumented;

impl Instrumented {
    /// Wrap `table`; the returned `AnyTable` (and every clone of it) reports
    /// to the returned probe.
    pub fn wrap(table: AnyTable) -> (AnyTable, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        (Hooked::wrap(table, probe.clone()), probe)
    }
}

impl Hooks for Probe {
    fn read<'a, T: Send + 'a>(&'a self, call: Call<'a, T>) -> Call<'a, T> {
        Box::pin(self.observe_read(call))
    }

    fn write<'a, T: Send + 'a>(
        &'a self,
        _op: &'static str,
        _id: Option<&'a str>,
        call: Call<'a, T>,
    ) -> Call<'a, T> {
        Box::pin(async move {
            self.check()?;
            call.await
        })
    }
}
