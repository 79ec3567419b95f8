//! A test-only `TableLike` around a real `AnyTable` that adds latency and
//! jitter to every master call, drawn from a seeded RNG. The data lives in
//! the real table; the wrapper only delays.
//!
//! Each read and write sleeps a random time before it reaches the real table
//! and another one after it, so the instant the master is actually read (or
//! written) falls anywhere inside the call, as with a real network.
//!
//! ```ignore
//! let master = Latency::wrap(seeded.table.clone(), Delays::jitter(seed, 2_000));
//! ```

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ciborium::Value;
use indexmap::IndexMap;
use vantage_core::Result;
use vantage_dataset::traits::{ReadableValueSet, ValueSet, WritableValueSet};
use vantage_expressions::AnyExpression;
use vantage_table::any::AnyTable;
use vantage_table::conditions::ConditionHandle;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

use super::rng::Rng;

/// How long master calls take: each side of the real call sleeps a random
/// time in `0..=max` microseconds (a fifth of the calls do not sleep at all,
/// so some calls overtake others).
#[derive(Debug)]
pub struct Delays {
    rng: Mutex<Rng>,
    read_us: u64,
    write_us: u64,
    /// Master reads so far.
    pub reads: AtomicUsize,
    /// Master writes so far.
    pub writes: AtomicUsize,
}

impl Delays {
    /// Up to `max_us` microseconds on each side of every read and write.
    pub fn jitter(seed: u64, max_us: u64) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(Rng::new(seed, 0x1a7e)),
            read_us: max_us,
            write_us: max_us,
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
        })
    }

    fn draw(&self, max_us: u64) -> Option<Duration> {
        if max_us == 0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap();
        if rng.chance(200) {
            return None;
        }
        Some(Duration::from_micros(rng.range(1, max_us)))
    }

    async fn pause(&self, max_us: u64) {
        match self.draw(max_us) {
            Some(d) => tokio::time::sleep(d).await,
            None => tokio::task::yield_now().await,
        }
    }
}

/// A real `AnyTable` behind [`Delays`]. Every `TableLike` method delegates.
#[derive(Clone)]
pub struct Latency {
    inner: AnyTable,
    delays: Arc<Delays>,
}

impl Latency {
    /// Wrap `table`; the returned `AnyTable` (and every clone) is delayed by
    /// `delays`.
    pub fn wrap(table: AnyTable, delays: Arc<Delays>) -> AnyTable {
        AnyTable::from_table_like(Latency {
            inner: table,
            delays,
        })
    }

    async fn read<T>(&self, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.delays.reads.fetch_add(1, Ordering::Relaxed);
        self.delays.pause(self.delays.read_us).await;
        let result = call.await;
        self.delays.pause(self.delays.read_us).await;
        result
    }

    async fn write<T>(&self, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.delays.writes.fetch_add(1, Ordering::Relaxed);
        self.delays.pause(self.delays.write_us).await;
        let result = call.await;
        self.delays.pause(self.delays.write_us).await;
        result
    }
}

impl ValueSet for Latency {
    type Id = String;
    type Value = Value;
}

#[async_trait]
impl ReadableValueSet for Latency {
    async fn list_values(&self) -> Result<IndexMap<String, Record<Value>>> {
        self.read(self.inner.list_values()).await
    }

    async fn get_value(&self, id: &String) -> Result<Option<Record<Value>>> {
        self.read(self.inner.get_value(id)).await
    }

    async fn get_some_value(&self) -> Result<Option<(String, Record<Value>)>> {
        self.read(self.inner.get_some_value()).await
    }
}

#[async_trait]
impl WritableValueSet for Latency {
    async fn insert_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.write(self.inner.insert_value(id, record)).await
    }

    async fn replace_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.write(self.inner.replace_value(id, record)).await
    }

    async fn patch_value(&self, id: &String, partial: &Record<Value>) -> Result<Record<Value>> {
        self.write(self.inner.patch_value(id, partial)).await
    }

    async fn delete(&self, id: &String) -> Result<()> {
        self.write(self.inner.delete(id)).await
    }

    async fn delete_all(&self) -> Result<()> {
        self.write(self.inner.delete_all()).await
    }
}

#[async_trait]
impl TableLike for Latency {
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
        self.read(self.inner.get_count()).await
    }

    fn get_ref(&self, relation: &str) -> Result<AnyTable> {
        self.inner.get_ref(relation)
    }
}
