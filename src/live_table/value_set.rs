//! The value-set traits, as requests through the stack.

use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use tower::{BoxError, Service};
use vantage_core::Result;
use vantage_dataset::traits::{InsertableValueSet, ReadableValueSet, ValueSet, WritableValueSet};
use vantage_live_layers::{Request, Response, Rows, Value, WriteRequest};
use vantage_types::Record;

use super::LiveTable;

impl<S> LiveTable<S>
where
    S: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    /// The rows of the current view, shared with the cache: no copy.
    ///
    /// The same view, slot and guarantees as
    /// [`list_values`](ReadableValueSet::list_values), which answers the
    /// same rows owned (copied once, at the edge). A hit costs the same for
    /// one row or a thousand. The rows handed out never change under their
    /// holder: a later fill stores new rows beside them.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use vantage_live::{LiveTable, MemCache};
    /// # async fn demo(master: vantage_table::any::AnyTable) -> vantage_core::Result<()> {
    /// let live = LiveTable::new(master, "products", Arc::new(MemCache::new()));
    /// let page = live.list_shared().await?; // miss: read from the master
    /// let again = live.list_shared().await?; // hit: the very same rows
    /// assert!(Arc::ptr_eq(&page, &again));
    /// for (id, row) in page.iter() {
    ///     println!("{id}: {} fields", row.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_shared(&self) -> Result<Arc<Rows>> {
        self.call(Request::List(self.view.clone()))
            .await?
            .into_shared_rows()
    }

    /// Row `id` of the current view, shared with the cache: no copy.
    ///
    /// The same view, slot and guarantees as
    /// [`get_value`](ReadableValueSet::get_value), which answers the same row
    /// owned.
    pub async fn get_shared(&self, id: &str) -> Result<Option<Arc<Record<Value>>>> {
        self.call(Request::Get {
            view: self.view.clone(),
            id: id.to_owned(),
        })
        .await?
        .into_shared_row()
    }
}

impl<S> ValueSet for LiveTable<S> {
    type Id = String;
    type Value = Value;
}

#[async_trait]
impl<S> ReadableValueSet for LiveTable<S>
where
    S: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    async fn list_values(&self) -> Result<IndexMap<String, Record<Value>>> {
        self.call(Request::List(self.view.clone()))
            .await?
            .into_rows()
    }

    async fn get_value(&self, id: &String) -> Result<Option<Record<Value>>> {
        self.call(Request::Get {
            view: self.view.clone(),
            id: id.clone(),
        })
        .await?
        .into_row()
    }

    async fn get_some_value(&self) -> Result<Option<(String, Record<Value>)>> {
        self.call(Request::GetSome(self.view.clone()))
            .await?
            .into_some()
    }
}

#[async_trait]
impl<S> WritableValueSet for LiveTable<S>
where
    S: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    async fn insert_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.call(
            WriteRequest::Insert {
                id: id.clone(),
                record: record.clone(),
            }
            .into(),
        )
        .await?
        .into_record()
    }

    async fn replace_value(&self, id: &String, record: &Record<Value>) -> Result<Record<Value>> {
        self.call(
            WriteRequest::Replace {
                id: id.clone(),
                record: record.clone(),
            }
            .into(),
        )
        .await?
        .into_record()
    }

    async fn patch_value(&self, id: &String, partial: &Record<Value>) -> Result<Record<Value>> {
        self.call(
            WriteRequest::Patch {
                id: id.clone(),
                partial: partial.clone(),
            }
            .into(),
        )
        .await?
        .into_record()
    }

    async fn delete(&self, id: &String) -> Result<()> {
        self.call(WriteRequest::Delete { id: id.clone() }.into())
            .await?
            .into_done()
    }

    /// Deletes every row of the current view: with equality or opaque
    /// conditions set, only the rows they select.
    async fn delete_all(&self) -> Result<()> {
        self.call(
            WriteRequest::DeleteAll {
                view: self.view.clone(),
            }
            .into(),
        )
        .await?
        .into_done()
    }
}

/// `AnyTable` has no insert-returning-id call, so the LiveTable generates the
/// id (UUID v7 by default; see [`LiveTable::with_id_generator`]) and inserts
/// the row under it. The returned id reads back with `get_value`.
#[async_trait]
impl<S> InsertableValueSet for LiveTable<S>
where
    S: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    async fn insert_return_id_value(&self, record: &Record<Value>) -> Result<String> {
        self.call(
            WriteRequest::InsertReturnId {
                record: record.clone(),
            }
            .into(),
        )
        .await?
        .into_id()
    }
}
