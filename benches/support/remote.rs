//! A master "over the network": a real `AnyTable` behind a `TableLike` that
//! counts reads and waits a fixed latency before each one.
//!
//! A local `vantage-redb` read never yields to the runtime, so two reads of
//! it never overlap and "concurrent" reads run one after the other. A master
//! across a network is awaited; the latency here makes reads overlap the way
//! they do against one, which is what the concurrency figure is about.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// What the bench sees of a [`Remote`] (shared by all its clones).
#[derive(Debug, Default)]
pub struct RemoteProbe {
    reads: AtomicUsize,
}

impl RemoteProbe {
    /// Master reads so far (`list_values`, `get_value`, `get_some_value`,
    /// `get_count`).
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

/// A real table behind a read counter and a fixed read latency.
#[derive(Clone)]
pub struct Remote {
    inner: AnyTable,
    latency: Duration,
    probe: Arc<RemoteProbe>,
}

impl Remote {
    /// Wrap `table`: every read waits `latency` (a tokio sleep) first.
    pub fn wrap(table: AnyTable, latency: Duration) -> (AnyTable, Arc<RemoteProbe>) {
        let probe = Arc::new(RemoteProbe::default());
        let remote = Remote {
            inner: table,
            latency,
            probe: probe.clone(),
        };
        (AnyTable::from_table_like(remote), probe)
    }

    async fn read(&self) {
        self.probe.reads.fetch_add(1, Ordering::SeqCst);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

impl ValueSet for Remote {
    type Id = String;
    type Value = Value;
}

#[async_trait]
impl ReadableValueSet for Remote {
    async fn list_values(&self) -> Result<IndexMap<String, Record<Value>>> {
        self.read().await;
        self.inner.list_values().await
    }

    async fn get_value(&self, id: &String) -> Result<Option<Record<Value>>> {
        self.read().await;
        self.inner.get_value(id).await
    }

    async fn get_some_value(&self) -> Result<Option<(String, Record<Value>)>> {
        self.read().await;
        self.inner.get_some_value().await
    }
}

#[async_trait]
impl WritableValueSet for Remote {
    async fn insert_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.inner.insert_value(id, record).await
    }

    async fn replace_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.inner.replace_value(id, record).await
    }

    async fn patch_value(&self, id: &String, partial: &Record<Value>) -> Result<Record<Value>> {
        self.inner.patch_value(id, partial).await
    }

    async fn delete(&self, id: &String) -> Result<()> {
        self.inner.delete(id).await
    }

    async fn delete_all(&self) -> Result<()> {
        self.inner.delete_all().await
    }
}

#[async_trait]
impl TableLike for Remote {
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
        self.read().await;
        self.inner.get_count().await
    }

    fn get_ref(&self, relation: &str) -> Result<AnyTable> {
        self.inner.get_ref(relation)
    }
}
