//! `TableLike`: metadata passes through to the master; pagination and
//! conditions shape this LiveTable's own view.

use std::any::Any;

use async_trait::async_trait;
use indexmap::IndexMap;
use tower::{BoxError, Service};
use vantage_core::{error, Result};
use vantage_expressions::AnyExpression;
use vantage_live_layers::{Request, Response, Value};
use vantage_table::any::AnyTable;
use vantage_table::conditions::ConditionHandle;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

use super::LiveTable;

#[async_trait]
impl<S> TableLike for LiveTable<S>
where
    S: Service<Request, Response = Response> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    fn table_name(&self) -> &str {
        self.master().table_name()
    }

    fn table_alias(&self) -> &str {
        self.master().table_alias()
    }

    fn column_names(&self) -> Vec<String> {
        self.master().column_names()
    }

    fn id_field_name(&self) -> Option<String> {
        self.master().id_field_name()
    }

    fn title_field_names(&self) -> Vec<String> {
        self.master().title_field_names()
    }

    fn column_types(&self) -> IndexMap<String, &'static str> {
        self.master().column_types()
    }

    fn get_ref_names(&self) -> Vec<String> {
        self.master().get_ref_names()
    }

    /// Forwarded to (a private copy of) the master. The cache cannot see
    /// into the condition, so from now on this LiveTable reads the master
    /// every time.
    fn add_condition(&mut self, condition: Box<dyn Any + Send + Sync>) -> Result<()> {
        let mut opaque = self.opaque_base();
        opaque.table.add_condition(condition)?;
        opaque.permanent = true;
        tracing::warn!(
            cache_key = self.cache_key(),
            "opaque condition added: this LiveTable now bypasses the cache"
        );
        self.set_opaque(Some(opaque));
        Ok(())
    }

    /// Forwarded to the master; if the master accepts it, the condition
    /// becomes part of every cache slot of this view (a conditioned view is
    /// cached apart and still dropped with the cache_key). If the master
    /// rejects it, its error is returned and nothing changes.
    fn add_condition_eq(&mut self, field: &str, value: &str) -> Result<()> {
        let mut probe = match &self.opaque {
            Some(o) => o.table.clone(),
            None => self.master().clone(),
        };
        for (f, v) in self.view.eq_conditions() {
            probe.add_condition_eq(f, v)?;
        }
        probe.add_condition_eq(field, value)?;
        self.view = self.view.clone().with_eq(field, value);
        Ok(())
    }

    /// Forwarded to (a private copy of) the master; while any temporary
    /// condition is set, this LiveTable reads the master every time.
    fn temp_add_condition(&mut self, condition: AnyExpression) -> Result<ConditionHandle> {
        let mut opaque = self.opaque_base();
        let handle = opaque.table.temp_add_condition(condition)?;
        opaque.temporary += 1;
        tracing::warn!(
            cache_key = self.cache_key(),
            "temporary condition added: this LiveTable bypasses the cache until it is removed"
        );
        self.set_opaque(Some(opaque));
        Ok(handle)
    }

    fn temp_remove_condition(&mut self, handle: ConditionHandle) -> Result<()> {
        let Some(mut opaque) = self.opaque.clone() else {
            return Err(error!(
                "no temporary condition is set on this LiveTable",
                cache_key = self.cache_key()
            ));
        };
        opaque.table.temp_remove_condition(handle)?;
        opaque.temporary = opaque.temporary.saturating_sub(1);
        if opaque.temporary == 0 && !opaque.permanent {
            self.set_opaque(None);
        } else {
            self.set_opaque(Some(opaque));
        }
        Ok(())
    }

    fn search_expression(&self, search_value: &str) -> Result<AnyExpression> {
        self.master().search_expression(search_value)
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

    /// Sets this LiveTable's view; the master's handle is never changed.
    /// Each page at each page size is its own cache slot.
    fn set_pagination(&mut self, pagination: Option<Pagination>) {
        self.pagination = pagination;
        self.view = self.view.clone().with_pagination(pagination);
    }

    fn get_pagination(&self) -> Option<&Pagination> {
        self.pagination.as_ref()
    }

    /// The count of the whole view (pagination does not apply), cached.
    async fn get_count(&self) -> Result<i64> {
        self.call(Request::Count(self.view.clone()))
            .await?
            .into_count()
    }

    /// The related table, from the master with this view's conditions
    /// applied. The related table is not cached; wrap it in its own
    /// LiveTable to cache it.
    fn get_ref(&self, relation: &str) -> Result<AnyTable> {
        self.view_table()?.get_ref(relation)
    }
}
