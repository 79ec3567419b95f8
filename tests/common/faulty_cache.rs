//! A test-only [`Cache`] around a real backend (`MemCache`, `RedbCache`) that
//! can be told to fail, to return junk, or to hold an invalidation, and that
//! counts the calls it sees. The slots and the invalidation state live in the
//! real backend (stacks over the wrapper and over the backend itself share
//! them). It never answers from memory ([`Cache::peek`] is `Unknown`), so
//! every read makes a `lookup` that a fault can hit.
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
use vantage_live::cache::{Generations, Namespace, Peek, Prefix, Ticket};
use vantage_live::{Cache, CachedRows, CachedSlot, RowChange, SlotKind, SlotValue};

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
    /// `get` and `lookup` calls.
    pub get: AtomicUsize,
    /// `put` and `fill` calls.
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
    /// Faults of `get` and `lookup`.
    pub get: Switch,
    /// While on, `get` and `lookup` answer a slot of the wrong shape (a
    /// count where rows or a row belong, rows where a count belongs) instead
    /// of failing.
    pub get_junk: Switch,
    /// Faults of `put` and `fill`.
    pub put: Switch,
    /// Faults of `invalidate_prefix`: the invalidation moves the real
    /// backend's generation but drops nothing, and leaves the cache_key
    /// unclean, as a backend whose drop failed does.
    pub invalidate: Switch,
    /// Calls seen.
    pub calls: Calls,
    /// How many `lookup` calls have returned (successfully or not).
    lookups: watch::Sender<usize>,
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
            calls: Calls::default(),
            lookups: watch::channel(0).0,
            rng: Mutex::new(Rng::new(seed, 0xfa17)),
            hold: Mutex::new(None),
        })
    }

    /// The real backend.
    pub fn inner(&self) -> &Arc<dyn Cache> {
        &self.inner
    }

    /// How many `lookup` calls have returned so far.
    pub fn lookups(&self) -> usize {
        *self.lookups.borrow()
    }

    /// Wait until `n` `lookup` calls have returned in all. A read that
    /// missed starts or joins a master read right after its lookup returns,
    /// with no await in between.
    pub async fn lookups_returned(&self, n: usize) {
        let mut rx = self.lookups.subscribe();
        tokio::time::timeout(super::PATIENCE, rx.wait_for(|&seen| seen >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} lookups"))
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

/// A slot of the wrong kind for `key`.
fn junk(key: &str) -> CachedSlot {
    match SlotKind::of_key(key) {
        SlotKind::Count => CachedSlot::new(SlotValue::Rows(Arc::new(indexmap::IndexMap::new()))),
        _ => CachedSlot::new(SlotValue::Count(-1)),
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
            // What a backend whose drop failed leaves: the generation moved
            // (fills in flight are fenced), the slots still there, the
            // cache_key unclean.
            if let Some(generations) = self.inner.generations() {
                for namespace in generations.resolve(&Prefix::parse(prefix)) {
                    let generation = namespace.start_drop(false);
                    namespace.end_drop(generation, false, false);
                }
            }
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

    /// Row-level drops fail like `invalidate_prefix` (counted with it):
    /// the generation moved, the slots still there, the cache_key unclean.
    async fn invalidate_rows(&self, namespace: &Arc<Namespace>, change: &RowChange) -> Result<()> {
        self.calls.invalidate.fetch_add(1, Ordering::SeqCst);
        if !self.fails(&self.invalidate) {
            return self.inner.invalidate_rows(namespace, change).await;
        }
        match namespace.start_row_drop(change) {
            Some(drop) => drop.finish::<(), ()>(&Err(())),
            None => {
                let generation = namespace.start_drop(false);
                namespace.end_drop(generation, false, false);
            }
        }
        Err(Self::injected("invalidate_rows"))
    }

    fn drops_rows(&self) -> bool {
        self.inner.drops_rows()
    }

    fn generations(&self) -> Option<&Generations> {
        self.inner.generations()
    }

    fn peek(&self, _key: &str, _namespace: &Arc<Namespace>) -> Peek {
        Peek::Unknown
    }

    async fn lookup(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        self.calls.get.fetch_add(1, Ordering::SeqCst);
        let result = if self.fails(&self.get) {
            Err(Self::injected("lookup"))
        } else if self.fails(&self.get_junk) {
            Ok(Some(junk(key)))
        } else {
            self.inner.lookup(key, namespace, ticket).await
        };
        self.lookups.send_modify(|n| *n += 1);
        result
    }

    async fn fill(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: Ticket,
        slot: CachedSlot,
    ) -> Result<bool> {
        self.calls.put.fetch_add(1, Ordering::SeqCst);
        if self.fails(&self.put) {
            return Err(Self::injected("fill"));
        }
        self.inner.fill(key, namespace, ticket, slot).await
    }

    fn stores(&self) -> bool {
        self.inner.stores()
    }
}
