//! [`TableService`]: the innermost service, running requests against an
//! [`AnyTable`].
//!
//! It never changes its own table handle. A request whose view differs from
//! the table as given (another page, an equality condition) runs against a
//! private clone with that view applied, so concurrent requests for different
//! pages cannot see each other's pagination. A request with the plain view
//! shares the handle and clones nothing.
//!
//! Reads go to the *read table*; writes go to the *write table*, which is the
//! read table unless [`TableService::with_write_target`] names another one.
//!
//! ```
//! # use vantage_live_layers::{Request, TableService, View};
//! # async fn demo(master: vantage_table::any::AnyTable) -> vantage_core::Result<()> {
//! use tower::ServiceExt;
//! let service = TableService::new(master);
//! let rows = service
//!     .oneshot(Request::List(View::new()))
//!     .await?
//!     .into_rows()?;
//! # let _ = rows; Ok(()) }
//! ```

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use vantage_core::{error, Result, VantageError};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

use crate::request::{Request, Response, View, WriteRequest};

/// Makes the ids [`WriteRequest::InsertReturnId`] stores rows under.
///
/// `AnyTable` has no insert-returning-id call, so the service generates the id
/// itself and inserts with it. The default, [`uuid_v7_id`], gives
/// time-ordered UUIDs, unique without asking the master.
pub type IdGenerator = Arc<dyn Fn() -> String + Send + Sync>;

/// The default [`IdGenerator`]: a UUID v7 in its hyphenated text form
/// (time-ordered, so ids sort by creation time).
pub fn uuid_v7_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The innermost service: runs each [`Request`] against an [`AnyTable`].
///
/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct TableService {
    tables: Arc<Tables>,
}

#[derive(Clone)]
struct Tables {
    read: AnyTable,
    write: Option<AnyTable>,
    ids: IdGenerator,
}

impl TableService {
    /// Serve reads and writes from `table`.
    pub fn new(table: AnyTable) -> Self {
        Self {
            tables: Arc::new(Tables {
                read: table,
                write: None,
                ids: Arc::new(uuid_v7_id),
            }),
        }
    }

    /// Send writes to `target` instead; reads stay on the read table.
    pub fn with_write_target(mut self, target: AnyTable) -> Self {
        Arc::make_mut(&mut self.tables).write = Some(target);
        self
    }

    /// Generate the ids of [`WriteRequest::InsertReturnId`] with `ids`.
    pub fn with_id_generator(mut self, ids: IdGenerator) -> Self {
        Arc::make_mut(&mut self.tables).ids = ids;
        self
    }

    /// The table reads run against.
    pub fn read_table(&self) -> &AnyTable {
        &self.tables.read
    }

    /// The table writes run against.
    pub fn write_table(&self) -> &AnyTable {
        self.tables.write.as_ref().unwrap_or(&self.tables.read)
    }

    /// Whether writes go somewhere other than the read table.
    pub fn has_write_target(&self) -> bool {
        self.tables.write.is_some()
    }

    /// The table handle to run a read of `view` on, with `pagination`.
    fn read_handle<'a>(
        &'a self,
        view: &'a View,
        pagination: Option<Pagination>,
    ) -> Result<Handle<'a>> {
        let base = match view.handle() {
            Some(opaque) => opaque,
            None => &self.tables.read,
        };
        Handle::apply(base, view.eq_conditions(), pagination)
    }

    /// The table handle a delete-all of `view` runs on.
    fn delete_all_handle<'a>(&'a self, view: &'a View) -> Result<Handle<'a>> {
        match (&self.tables.write, view.handle()) {
            (Some(_), Some(_)) => Err(error!(
                "delete_all with opaque conditions cannot run on a custom write target: \
                 the conditions were built for the read table; nothing was deleted"
            )
            .is_incorrect_usage()),
            (Some(target), None) => Handle::apply(target, view.eq_conditions(), None),
            (None, _) => self.read_handle(view, None),
        }
    }
}

/// A table handle for one request: the shared one, or a private clone with the
/// request's view applied.
enum Handle<'t> {
    Shared(&'t AnyTable),
    Owned(AnyTable),
}

impl<'t> Handle<'t> {
    fn apply(
        base: &'t AnyTable,
        eq: &[(String, String)],
        pagination: Option<Pagination>,
    ) -> Result<Handle<'t>> {
        if eq.is_empty() && base.get_pagination().copied() == pagination {
            return Ok(Handle::Shared(base));
        }
        let mut table = base.clone();
        for (field, value) in eq {
            table.add_condition_eq(field, value)?;
        }
        table.set_pagination(pagination);
        Ok(Handle::Owned(table))
    }
}

impl Deref for Handle<'_> {
    type Target = AnyTable;
    fn deref(&self) -> &AnyTable {
        match self {
            Handle::Shared(t) => t,
            Handle::Owned(t) => t,
        }
    }
}

impl fmt::Debug for TableService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableService")
            .field("read", &self.tables.read.table_name())
            .field("write", &self.tables.write.as_ref().map(|t| t.table_name()))
            .finish()
    }
}

impl tower::Service<Request> for TableService {
    type Response = Response;
    type Error = VantageError;
    type Future = BoxFuture<'static, Result<Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.run(request).await })
    }
}

impl TableService {
    async fn run(&self, request: Request) -> Result<Response> {
        match request {
            Request::List(view) => {
                let table = self.read_handle(&view, view.pagination())?;
                Ok(Response::Rows(Arc::new(table.list_values().await?)))
            }
            Request::Get { view, id } => {
                let table = self.read_handle(&view, None)?;
                Ok(Response::Row(table.get_value(&id).await?.map(Arc::new)))
            }
            Request::GetSome(view) => {
                let table = self.read_handle(&view, view.pagination())?;
                Ok(Response::Some(table.get_some_value().await?))
            }
            Request::Count(view) => {
                let table = self.read_handle(&view, None)?;
                Ok(Response::Count(table.get_count().await?))
            }
            Request::Write(write) => self.run_write(write).await,
        }
    }

    async fn run_write(&self, write: WriteRequest) -> Result<Response> {
        let target = self.write_table();
        match write {
            WriteRequest::Insert { id, record } => {
                Ok(Response::Record(target.insert_value(&id, &record).await?))
            }
            WriteRequest::Replace { id, record } => {
                Ok(Response::Record(target.replace_value(&id, &record).await?))
            }
            WriteRequest::Patch { id, partial } => {
                Ok(Response::Record(target.patch_value(&id, &partial).await?))
            }
            WriteRequest::Delete { id } => {
                target.delete(&id).await?;
                Ok(Response::Done)
            }
            WriteRequest::DeleteAll { view } => {
                self.delete_all_handle(&view)?.delete_all().await?;
                Ok(Response::Done)
            }
            WriteRequest::InsertReturnId { record } => {
                let id = (self.tables.ids)();
                target.insert_value(&id, &record).await?;
                Ok(Response::Id(id))
            }
        }
    }
}
