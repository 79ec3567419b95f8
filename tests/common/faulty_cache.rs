//! A test-only [`Cache`] around a real backend (`MemCache`, `RedbCache`) that
//! can be told to fail, to return junk, or to hold an invalidation, and that
//! counts the calls it sees. The slots live in the real backend.
//!
//! ```ignore
//! let faulty = FaultyCache::around(Arc::new(MemCache::new()));
//! faulty.get.set(Fault::Always);        // every get fails: reads are misses
//! faulty.invalidate.set(Fault::Rate(50)); // 5% of invalidations fail
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch, Semaphore};
use vantage_core::Result;
use vantage_live::{Cache, CachedRows};

use super::rng::Rng;

/// When one kind of call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Never: the call goes to the real backend.
    Off,
    /// Every call fails (without reaching the real backend).
    Always,
    /// A call fails with this probability in thousandths, drawn from the
    /// cache's seeded RNG.
    Rate(u64),
}

/// A [`Fault`] switch, changeable while the cache is in use.
#[derive(Debug)]
pub struct Switch(AtomicU64);

impl Switch {
    fn new() -> Self {
        Switch(AtomicU64::new(0))
    }

    /// Change the fault.
    pub fn set(&self, fault: Fault) {
        let code = match fault {
            Fault::Off => 0,
            Fault::Always => 1,
            Fault::Rate(per_mille) => 2 + per_mille.min(1000),
        };
        self.0.store(code, Ordering::SeqCst);
    }

    fn get(&self) -> Fault {
        match self.0.load(Ordering::SeqCst) {
            0 => Fault::Off,
            1 => Fault::Always,
            n => Fault::Rate(n - 2),
        }
    }
}

/// Calls seen (counted before any fault is applied).
#[derive(Debug, Default)]
pub struct Calls {
    /// `get` calls.
    pub get: AtomicUsize,
    /// `put` and `put_if_generation` calls.
    pub put: AtomicUsize,
    /// `invalidate_prefix` calls.
    pub invalidate: AtomicUsize,
    /// Failures injected, of any kind.
    pub faults: AtomicUsize,
}

/// Invalidations to hold after the real backend did them, before they
/// return.
struct HoldInvalidations {
    remaining: usize,
    done: mpsc::UnboundedSender<()>,
    release: Arc<Semaphore>,
}

/// The test's side of [`FaultyCache::hold_invalidations`].
pub struct HeldInvalidations {
    done: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
}

impl HeldInvalidations {
    /// Wait until a held invalidation has dropped the slots in the real
    /// backend and is waiting to return.
    pub async fn done(&mut self) {
        tokio::time::timeout(super::PATIENCE, self.done.recv())
            .await
            .expect("no held invalidation reached the backend")
            .expect("the cache is gone");
    }

    /// Let `n` held invalidations return.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// A real backend with switchable faults.
pub struct FaultyCache {
    inner: Arc<dyn Cache>,
    /// Faults of `get`.
    pub get: Switch,
    /// While on, `get` answers a slot of the wrong shape (one row with an
    /// unexpected field) instead of failing.
    pub get_junk: Switch,
    /// Faults of `put` and `put_if_generation`.
    pub put: Switch,
    /// Faults of `invalidate_prefix`.
    pub invalidate: Switch,
    /// Faults of `generation`.
    pub generation: Switch,
    /// Calls seen.
    pub calls: Calls,
    /// How many `generation` calls have returned (successfully or not).
    generations: watch::Sender<usize>,
    rng: Mutex<Rng>,
    hold: Mutex<Option<HoldInvalidations>>,
}

impl FaultyCache {
    /// Wrap `inner`; no faults until a switch is set.
    pub fn around(inner: Arc<dyn Cache>) -> Arc<Self> {
        Self::seeded(inner, 0)
    }

    /// Wrap `inner`, drawing `Fault::Rate` faults from `seed`.
    pub fn seeded(inner: Arc<dyn Cache>, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            inner,
            get: Switch::new(),
            get_junk: Switch::new(),
            put: Switch::new(),
            invalidate: Switch::new(),
            generation: Switch::new(),
            calls: Calls::default(),
            generations: watch::channel(0).0,
            rng: Mutex::new(Rng::new(seed, 0xfa17)),
            hold: Mutex::new(None),
        })
    }

    /// The real backend.
    pub fn inner(&self) -> &Arc<dyn Cache> {
        &self.inner
    }

    /// How many `generation` calls have returned so far.
    pub fn generations(&self) -> usize {
        *self.generations.borrow()
    }

    /// Wait until `n` `generation` calls have returned in all. A read that
    /// missed asks for the generation just before it starts or joins a
    /// master read, with no await in between.
    pub async fn generations_returned(&self, n: usize) {
        let mut rx = self.generations.subscribe();
        tokio::time::timeout(super::PATIENCE, rx.wait_for(|&seen| seen >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} generation calls"))
            .expect("the cache is gone");
    }

    /// Hold the next `n` invalidations after the real backend dropped the
    /// slots, before they return `Ok` (or their injected error).
    pub fn hold_invalidations(&self, n: usize) -> HeldInvalidations {
        let (tx, rx) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        *self.hold.lock().unwrap() = Some(HoldInvalidations {
            remaining: n,
            done: tx,
            release: release.clone(),
        });
        HeldInvalidations { done: rx, release }
    }

    /// Whether a call with this switch fails now.
    fn fails(&self, switch: &Switch) -> bool {
        let fail = match switch.get() {
            Fault::Off => false,
            Fault::Always => true,
            Fault::Rate(per_mille) => self.rng.lock().unwrap().chance(per_mille),
        };
        if fail {
            self.calls.faults.fetch_add(1, Ordering::SeqCst);
        }
        fail
    }

    fn injected(what: &str) -> vantage_core::VantageError {
        vantage_core::error!("injected cache fault", call = what)
    }
}

impl std::fmt::Debug for FaultyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyCache")
            .field("calls", &self.calls)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Cache for FaultyCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        self.calls.get.fetch_add(1, Ordering::SeqCst);
        if self.fails(&self.get) {
            return Err(Self::injected("get"));
        }
        if self.fails(&self.get_junk) {
            let mut record = vantage_types::Record::new();
            record.insert("junk".to_string(), ciborium::Value::Bool(true));
            let mut rows = indexmap::IndexMap::new();
            rows.insert("junk".to_string(), record);
            return Ok(Some(CachedRows::new(rows)));
        }
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        self.calls.put.fetch_add(1, Ordering::SeqCst);
        if self.fails(&self.put) {
            return Err(Self::injected("put"));
        }
        self.inner.put(key, rows).await
    }

    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        self.calls.invalidate.fetch_add(1, Ordering::SeqCst);
        let fail = self.fails(&self.invalidate);
        let result = if fail {
            Err(Self::injected("invalidate_prefix"))
        } else {
            self.inner.invalidate_prefix(prefix).await
        };
        let held = {
            let mut hold = self.hold.lock().unwrap();
            match hold.as_mut() {
                Some(h) if h.remaining > 0 => {
                    h.remaining -= 1;
                    let _ = h.done.send(());
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

    async fn generation(&self, key: &str) -> Result<u64> {
        let result = if self.fails(&self.generation) {
            Err(Self::injected("generation"))
        } else {
            self.inner.generation(key).await
        };
        self.generations.send_modify(|n| *n += 1);
        result
    }

    async fn put_if_generation(
        &self,
        key: &str,
        rows: CachedRows,
        generation: u64,
    ) -> Result<bool> {
        self.calls.put.fetch_add(1, Ordering::SeqCst);
        if self.fails(&self.put) {
            return Err(Self::injected("put_if_generation"));
        }
        self.inner.put_if_generation(key, rows, generation).await
    }
}
