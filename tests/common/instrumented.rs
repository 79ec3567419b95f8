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

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ciborium::Value;
use indexmap::IndexMap;
use tokio::sync::{mpsc, Barrier, Semaphore};
use vantage_core::Result;
use vantage_dataset::traits::{ReadableValueSet, ValueSet, WritableValueSet};
use vantage_expressions::AnyExpression;
use vantage_table::any::AnyTable;
use vantage_table::conditions::ConditionHandle;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

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
    async fn read<T>(&self, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
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

/// A real `AnyTable` behind a [`Probe`]. Every `TableLike` method delegates.
#[derive(Clone)]
pub struct Instrumented {
    inner: AnyTable,
    probe: Arc<Probe>,
}

impl Instrumented {
    /// Wrap `table`; the returned `AnyTable` (and every clone of it) reports
    /// to the returned probe.
    pub fn wrap(table: AnyTable) -> (AnyTable, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let wrapped = Instrumented {
            inner: table,
            probe: probe.clone(),
        };
        (AnyTable::from_table_like(wrapped), probe)
    }
}

impl ValueSet for Instrumented {
    type Id = String;
    type Value = Value;
}

#[async_trait]
impl ReadableValueSet for Instrumented {
    async fn list_values(&self) -> Result<IndexMap<String, Record<Value>>> {
        self.probe.read(self.inner.list_values()).await
    }

    async fn get_value(&self, id: &String) -> Result<Option<Record<Value>>> {
        self.probe.read(self.inner.get_value(id)).await
    }

    async fn get_some_value(&self) -> Result<Option<(String, Record<Value>)>> {
        self.probe.read(self.inner.get_some_value()).await
    }
}

#[async_trait]
impl WritableValueSet for Instrumented {
    async fn insert_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.probe.check()?;
        self.inner.insert_value(id, record).await
    }

    async fn replace_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.probe.check()?;
        self.inner.replace_value(id, record).await
    }

    async fn patch_value(&self, id: &String, partial: &Record<Value>) -> Result<Record<Value>> {
        self.probe.check()?;
        self.inner.patch_value(id, partial).await
    }

    async fn delete(&self, id: &String) -> Result<()> {
        self.probe.check()?;
        self.inner.delete(id).await
    }

    async fn delete_all(&self) -> Result<()> {
        self.probe.check()?;
        self.inner.delete_all().await
    }
}

#[async_trait]
impl TableLike for Instrumented {
    fn table_name(&self) -> &str {
        self.inner.table_name()
    }

    fn table_alias(&self) -> &str {
        self.inner.table_alias()
    }

    fn column_names(&self) -> Vec<String> {
        self.inner.column_names()
    }

    fn set_table_name(&mut self, name: String) {
        self.inner.set_table_name(name)
    }

    fn id_field_name(&self) -> Option<String> {
        self.inner.id_field_name()
    }

    fn title_field_names(&self) -> Vec<String> {
        self.inner.title_field_names()
    }

    fn column_types(&self) -> IndexMap<String, &'static str> {
        self.inner.column_types()
    }

    fn get_ref_names(&self) -> Vec<String> {
        self.inner.get_ref_names()
    }

    fn add_condition(&mut self, condition: Box<dyn Any + Send + Sync>) -> Result<()> {
        self.inner.add_condition(condition)
    }

    fn add_condition_eq(&mut self, field: &str, value: &str) -> Result<()> {
        self.inner.add_condition_eq(field, value)
    }

    fn temp_add_condition(&mut self, condition: AnyExpression) -> Result<ConditionHandle> {
        self.inner.temp_add_condition(condition)
    }

    fn temp_remove_condition(&mut self, handle: ConditionHandle) -> Result<()> {
        self.inner.temp_remove_condition(handle)
    }

    fn search_expression(&self, search_value: &str) -> Result<AnyExpression> {
        self.inner.search_expression(search_value)
    }

    /// Clones share the probe.
    fn clone_box(&self) -> Box<dyn TableLike<Value = Value, Id = String>> {
        Box::new(self.clone())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn as_any_ref(&self) -> &dyn Any {
        self
    }

    fn set_pagination(&mut self, pagination: Option<Pagination>) {
        self.inner.set_pagination(pagination)
    }

    fn get_pagination(&self) -> Option<&Pagination> {
        self.inner.get_pagination()
    }

    async fn get_count(&self) -> Result<i64> {
        self.probe.read(self.inner.get_count()).await
    }

    fn get_ref(&self, relation: &str) -> Result<AnyTable> {
        self.inner.get_ref(relation)
    }
}
