//! One test-only `TableLike` around a real `AnyTable`: every method
//! delegates, and reads and writes run through [`Hooks`]. The data always
//! lives in the real table; the hooks only count, delay, gate or fail.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use ciborium::Value;
use indexmap::IndexMap;
use vantage_core::Result;
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_dataset::traits::ValueSet;
use vantage_expressions::AnyExpression;
use vantage_table::any::AnyTable;
use vantage_table::conditions::ConditionHandle;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;
use vantage_types::Record;

/// A boxed master call.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a wrapper does around the real table's calls. Both default to
/// running the call as is.
pub trait Hooks: Send + Sync + 'static {
    /// Around one master read (`list_values`, `get_value`,
    /// `get_some_value`, `get_count`).
    fn read<'a, T: Send + 'a>(&'a self, call: Call<'a, T>) -> Call<'a, T> {
        call
    }

    /// Around one master write, named by `op` (`insert`, `replace`, `patch`,
    /// `delete`, `delete_all`) and the row `id` it targets, if any.
    fn write<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        id: Option<&'a str>,
        call: Call<'a, T>,
    ) -> Call<'a, T> {
        let _ = (op, id);
        call
    }
}

/// A real table behind `H`. Clones share the hooks.
pub struct Hooked<H> {
    inner: AnyTable,
    hooks: Arc<H>,
}

impl<H> Clone for Hooked<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            hooks: self.hooks.clone(),
        }
    }
}

impl<H: Hooks> Hooked<H> {
    /// `table` behind `hooks`, as an `AnyTable` (every clone shares them).
    pub fn wrap(table: AnyTable, hooks: Arc<H>) -> AnyTable {
        AnyTable::from_table_like(Hooked {
            inner: table,
            hooks,
        })
    }
}

impl<H> ValueSet for Hooked<H> {
    type Id = String;
    type Value = Value;
}

#[async_trait]
impl<H: Hooks> ReadableValueSet for Hooked<H> {
    async fn list_values(&self) -> Result<IndexMap<String, Record<Value>>> {
        self.hooks.read(self.inner.list_values()).await
    }

    async fn get_value(&self, id: &String) -> Result<Option<Record<Value>>> {
        self.hooks.read(self.inner.get_value(id)).await
    }

    async fn get_some_value(&self) -> Result<Option<(String, Record<Value>)>> {
        self.hooks.read(self.inner.get_some_value()).await
    }
}

#[async_trait]
impl<H: Hooks> WritableValueSet for Hooked<H> {
    async fn insert_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        let call = self.inner.insert_value(id, record);
        self.hooks.write("insert", Some(id), call).await
    }

    async fn replace_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        let call = self.inner.replace_value(id, record);
        self.hooks.write("replace", Some(id), call).await
    }

    async fn patch_value(&self, id: &String, partial: &Record<Value>) -> Result<Record<Value>> {
        let call = self.inner.patch_value(id, partial);
        self.hooks.write("patch", Some(id), call).await
    }

    async fn delete(&self, id: &String) -> Result<()> {
        let call = self.inner.delete(id);
        self.hooks.write("delete", Some(id), call).await
    }

    async fn delete_all(&self) -> Result<()> {
        let call = self.inner.delete_all();
        self.hooks.write("delete_all", None, call).await
    }
}

#[async_trait]
impl<H: Hooks> TableLike for Hooked<H> {
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
        self.hooks.read(self.inner.get_count()).await
    }

    fn get_ref(&self, relation: &str) -> Result<AnyTable> {
        self.inner.get_ref(relation)
    }
}
