//! A `vantage-surrealdb` table with bare record keys.
//!
//! `vantage-surrealdb` 0.4's `AnyTable` names rows by their full record id
//! (`product:p01_baguette`), and turns an id without a table into a record of
//! the table `_`. The bakery suites and the CLI name rows by their key
//! (`p01_baguette`), as every other master does. [`bare_keys`] wraps the
//! table: keys go in as `product:⟨key⟩` and come out without `product:`.
//! Everything else delegates to the real table.
//!
//! `vantage-surrealdb` 0.4 writes record ids into its queries without
//! escaping them (its insert statement alone quotes a key that holds a
//! space). Quoting the key in `⟨⟩` makes any key safe except those the
//! quoting cannot carry, which are refused with an error: keys with `⟩`, `\`
//! or NUL (SurrealDB 3 accepts no escape for them there).
//!
//! Shared by the tests (`tests/common`) and the `live_cli` example.

use std::any::Any;

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

/// `table` (a `vantage-surrealdb` `AnyTable`) with rows named by their bare
/// record key.
pub fn bare_keys(table: AnyTable) -> AnyTable {
    AnyTable::from_table_like(BareKeys { inner: table })
}

/// Whether `key` can be used as a record key through [`bare_keys`]; `Err`
/// says why not.
pub fn check_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("a SurrealDB record key cannot be empty".into());
    }
    if let Some(c) = key.chars().find(|c| matches!(c, '⟩' | '\\' | '\0')) {
        return Err(format!(
            "the SurrealDB record key {key:?} holds {c:?}; keys with '⟩', '\\' or NUL \
             cannot be used through vantage-surrealdb 0.4"
        ));
    }
    Ok(())
}

/// The table behind [`bare_keys`].
#[derive(Clone)]
struct BareKeys {
    inner: AnyTable,
}

impl BareKeys {
    /// `table:⟨key⟩`, or an error naming the key.
    fn record_id(&self, key: &str) -> Result<String> {
        check_key(key).map_err(|reason| vantage_core::error!(reason))?;
        Ok(format!("{}:⟨{key}⟩", self.inner.table_name()))
    }

    /// The record id for an insert: the insert statement quotes a key with a
    /// space itself (and would quote `⟨key⟩` a second time).
    fn insert_id(&self, key: &str) -> Result<String> {
        if key.contains(' ') {
            check_key(key).map_err(|reason| vantage_core::error!(reason))?;
            Ok(format!("{}:{key}", self.inner.table_name()))
        } else {
            self.record_id(key)
        }
    }

    /// `key` of `table:key`, or an error for a row of another table.
    fn key(&self, id: String) -> Result<String> {
        let table = self.inner.table_name();
        match id.split_once(':') {
            Some((t, key)) if t == table => Ok(key.to_string()),
            _ => Err(vantage_core::error!(
                "a row id is not a record of this table",
                table = table,
                id = id
            )),
        }
    }
}

impl ValueSet for BareKeys {
    type Id = String;
    type Value = Value;
}

#[async_trait]
impl ReadableValueSet for BareKeys {
    async fn list_values(&self) -> Result<IndexMap<String, Record<Value>>> {
        let rows = self.inner.list_values().await?;
        rows.into_iter()
            .map(|(id, row)| Ok((self.key(id)?, row)))
            .collect()
    }

    async fn get_value(&self, id: &String) -> Result<Option<Record<Value>>> {
        self.inner.get_value(&self.record_id(id)?).await
    }

    async fn get_some_value(&self) -> Result<Option<(String, Record<Value>)>> {
        match self.inner.get_some_value().await? {
            Some((id, row)) => Ok(Some((self.key(id)?, row))),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl WritableValueSet for BareKeys {
    async fn insert_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.inner.insert_value(&self.insert_id(id)?, record).await
    }

    async fn replace_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.inner.replace_value(&self.record_id(id)?, record).await
    }

    async fn patch_value(&self, id: &String, partial: &Record<Value>) -> Result<Record<Value>> {
        self.inner.patch_value(&self.record_id(id)?, partial).await
    }

    async fn delete(&self, id: &String) -> Result<()> {
        self.inner.delete(&self.record_id(id)?).await
    }

    async fn delete_all(&self) -> Result<()> {
        self.inner.delete_all().await
    }
}

#[async_trait]
impl TableLike for BareKeys {
    fn table_name(&self) -> &str {
        self.inner.table_name()
    }

    fn table_alias(&self) -> &str {
        self.inner.table_alias()
    }

    fn column_names(&self) -> Vec<String> {
        self.inner.column_names()
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
        self.inner.get_count().await
    }

    fn get_ref(&self, relation: &str) -> Result<AnyTable> {
        self.inner.get_ref(relation).map(bare_keys)
    }
}
