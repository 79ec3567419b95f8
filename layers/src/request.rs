//! The request vocabulary: what a stack can be asked, and what it answers.
//!
//! Every layer in this crate is a `tower::Service<Request, Response = Response,
//! Error = VantageError>`. A [`Request`] is either a read (list a page, get one
//! id, get some row, count) or a write (insert, replace, patch, delete, delete
//! all, insert returning an id). Reads carry the [`View`] they look at: its
//! pagination and its equality conditions, so concurrent requests for different
//! pages never disturb each other's table handle.
//!
//! [`Response`] is one enum; the typed accessors ([`Response::into_rows`],
//! [`Response::into_count`], ...) turn it into the value the request kind
//! promises, or into an error that names both kinds if a layer answered with
//! the wrong one.

use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use vantage_core::{error, Result};
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_types::Record;

/// The value type every request and response carries (the `AnyTable` carrier).
pub type Value = ciborium::Value;

/// A map of rows keyed by id, in the order the master returned them.
pub type Rows = IndexMap<String, Record<Value>>;

/// What a read looks at: pagination, equality conditions, or an opaque table
/// handle.
///
/// The default view is the whole, unpaginated, unconditioned table. Views are
/// cheap to clone: conditions and handles are shared behind `Arc`s.
#[derive(Clone, Default)]
pub struct View {
    pagination: Option<Pagination>,
    eq: Arc<[(String, String)]>,
    handle: Option<Arc<AnyTable>>,
}

impl View {
    /// The whole table: no pagination, no conditions.
    pub fn new() -> Self {
        Self::default()
    }

    /// This view, showing `pagination` (or every row, for `None`).
    pub fn with_pagination(mut self, pagination: Option<Pagination>) -> Self {
        self.pagination = pagination;
        self
    }

    /// This view, narrowed by `field = value` (as `TableLike::add_condition_eq`
    /// understands it). Equality conditions are part of the view's identity:
    /// a cache keeps a conditioned view apart from the unconditioned one.
    pub fn with_eq(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        let mut eq: Vec<(String, String)> = self.eq.iter().cloned().collect();
        eq.push((field.into(), value.into()));
        self.eq = eq.into();
        self
    }

    /// This view, run against `table` instead of the service's own table.
    ///
    /// Use it for conditions a cache cannot see into (`add_condition`,
    /// `temp_add_condition`): the table already carries them. A view with a
    /// handle is *opaque* and is never served from, or stored into, a cache.
    pub fn with_handle(mut self, table: AnyTable) -> Self {
        self.handle = Some(Arc::new(table));
        self
    }

    /// The pagination this view shows, if any.
    pub fn pagination(&self) -> Option<Pagination> {
        self.pagination
    }

    /// The equality conditions, in the order they were added.
    pub fn eq_conditions(&self) -> &[(String, String)] {
        &self.eq
    }

    /// The opaque table handle, if this view carries one.
    pub fn handle(&self) -> Option<&AnyTable> {
        self.handle.as_deref()
    }

    /// Whether a cache may serve and store this view (it has no opaque handle).
    pub fn is_cacheable(&self) -> bool {
        self.handle.is_none()
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("pagination", &self.pagination)
            .field("eq", &self.eq)
            .field("opaque", &self.handle.is_some())
            .finish()
    }
}

/// A request to a stack: one read or one write.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Request {
    /// List the rows of a view (one page of it, if paginated). Answers
    /// [`Response::Rows`].
    List(View),
    /// Get one row by id. Pagination does not apply to it; conditions do.
    /// Answers [`Response::Row`] (`None` if there is no such row in the view).
    Get {
        /// The view the row must be in.
        view: View,
        /// The row's id.
        id: String,
    },
    /// Get any one row of the view. Answers [`Response::Some`].
    GetSome(View),
    /// Count the rows of the whole view. Pagination never applies: the SQL
    /// backends refuse a paginated count. Answers [`Response::Count`].
    Count(View),
    /// A write. Each [`WriteRequest`] variant says what it answers.
    Write(WriteRequest),
}

/// A write request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WriteRequest {
    /// Insert `record` under `id` (idempotent: an existing row is kept).
    /// Answers [`Response::Record`].
    Insert {
        /// The new row's id.
        id: String,
        /// The row.
        record: Record<Value>,
    },
    /// Replace the whole row `id`. Answers [`Response::Record`].
    Replace {
        /// The row's id.
        id: String,
        /// The new row.
        record: Record<Value>,
    },
    /// Merge `partial` into row `id`. Answers [`Response::Record`].
    Patch {
        /// The row's id.
        id: String,
        /// The fields to change.
        partial: Record<Value>,
    },
    /// Delete row `id`. Answers [`Response::Done`].
    Delete {
        /// The row's id.
        id: String,
    },
    /// Delete every row of `view` (all of them, for the default view).
    /// Pagination does not apply; equality conditions and an opaque handle
    /// do, so a conditioned view deletes only its own rows. Answers
    /// [`Response::Done`].
    DeleteAll {
        /// The rows to delete.
        view: View,
    },
    /// Insert `record` under a newly generated id. Answers [`Response::Id`].
    InsertReturnId {
        /// The row.
        record: Record<Value>,
    },
}

impl WriteRequest {
    /// The operation's name as it appears in logs and errors: `insert`,
    /// `replace`, `patch`, `delete`, `delete_all` or `insert_return_id`.
    pub fn op(&self) -> &'static str {
        match self {
            WriteRequest::Insert { .. } => "insert",
            WriteRequest::Replace { .. } => "replace",
            WriteRequest::Patch { .. } => "patch",
            WriteRequest::Delete { .. } => "delete",
            WriteRequest::DeleteAll { .. } => "delete_all",
            WriteRequest::InsertReturnId { .. } => "insert_return_id",
        }
    }

    /// The row id this write targets, if it names one.
    pub fn id(&self) -> Option<&str> {
        match self {
            WriteRequest::Insert { id, .. }
            | WriteRequest::Replace { id, .. }
            | WriteRequest::Patch { id, .. }
            | WriteRequest::Delete { id } => Some(id),
            WriteRequest::DeleteAll { .. } | WriteRequest::InsertReturnId { .. } => None,
        }
    }
}

impl Request {
    /// Whether this request changes data.
    pub fn is_write(&self) -> bool {
        matches!(self, Request::Write(_))
    }

    /// The request kind's name, as logs and errors show it.
    pub fn op(&self) -> &'static str {
        match self {
            Request::List(_) => "list",
            Request::Get { .. } => "get",
            Request::GetSome(_) => "get_some",
            Request::Count(_) => "count",
            Request::Write(w) => w.op(),
        }
    }

    /// The view a read looks at (`None` for writes).
    pub fn view(&self) -> Option<&View> {
        match self {
            Request::List(v) | Request::GetSome(v) | Request::Count(v) => Some(v),
            Request::Get { view, .. } => Some(view),
            Request::Write(_) => None,
        }
    }
}

impl From<WriteRequest> for Request {
    fn from(w: WriteRequest) -> Self {
        Request::Write(w)
    }
}

/// The value in `shared`: moved out if this is the only reference, else
/// cloned.
fn unshare<T: Clone>(shared: Arc<T>) -> T {
    Arc::try_unwrap(shared).unwrap_or_else(|shared| T::clone(&shared))
}

/// The answer to a [`Request`].
///
/// Read answers share their rows behind `Arc`s, so a cache can hand out the
/// rows it holds without copying them: cloning a response is cheap. The
/// owned accessors ([`Response::into_rows`], [`Response::into_row`]) copy
/// the rows only if someone else still shares them.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Response {
    /// Rows of a view ([`Request::List`]).
    Rows(Arc<Rows>),
    /// One row, or none ([`Request::Get`]).
    Row(Option<Arc<Record<Value>>>),
    /// Some row of the view, or none ([`Request::GetSome`]).
    Some(Option<(String, Record<Value>)>),
    /// A row count ([`Request::Count`]).
    Count(i64),
    /// The row as stored by an insert, replace or patch.
    Record(Record<Value>),
    /// A delete or delete-all finished.
    Done,
    /// The id an [`WriteRequest::InsertReturnId`] stored the row under.
    Id(String),
}

impl Response {
    /// The response kind's name, as errors show it.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Rows(_) => "rows",
            Response::Row(_) => "row",
            Response::Some(_) => "some",
            Response::Count(_) => "count",
            Response::Record(_) => "record",
            Response::Done => "done",
            Response::Id(_) => "id",
        }
    }

    fn mismatch(&self, expected: &'static str) -> vantage_core::VantageError {
        error!(
            "a layer answered with the wrong response kind",
            expected = expected,
            got = self.kind()
        )
    }

    /// The rows of a [`Response::Rows`], owned: moved out if nobody else
    /// shares them, else copied (once).
    pub fn into_rows(self) -> Result<Rows> {
        self.into_shared_rows().map(unshare)
    }

    /// The rows of a [`Response::Rows`], shared (no copy).
    pub fn into_shared_rows(self) -> Result<Arc<Rows>> {
        match self {
            Response::Rows(rows) => Ok(rows),
            other => Err(other.mismatch("rows")),
        }
    }

    /// The row of a [`Response::Row`], owned: moved out if nobody else shares
    /// it, else copied (once).
    pub fn into_row(self) -> Result<Option<Record<Value>>> {
        self.into_shared_row().map(|row| row.map(unshare))
    }

    /// The row of a [`Response::Row`], shared (no copy).
    pub fn into_shared_row(self) -> Result<Option<Arc<Record<Value>>>> {
        match self {
            Response::Row(row) => Ok(row),
            other => Err(other.mismatch("row")),
        }
    }

    /// The row of a [`Response::Some`].
    pub fn into_some(self) -> Result<Option<(String, Record<Value>)>> {
        match self {
            Response::Some(row) => Ok(row),
            other => Err(other.mismatch("some")),
        }
    }

    /// The count of a [`Response::Count`].
    pub fn into_count(self) -> Result<i64> {
        match self {
            Response::Count(n) => Ok(n),
            other => Err(other.mismatch("count")),
        }
    }

    /// The stored record of a [`Response::Record`].
    pub fn into_record(self) -> Result<Record<Value>> {
        match self {
            Response::Record(r) => Ok(r),
            other => Err(other.mismatch("record")),
        }
    }

    /// Checks for [`Response::Done`].
    pub fn into_done(self) -> Result<()> {
        match self {
            Response::Done => Ok(()),
            other => Err(other.mismatch("done")),
        }
    }

    /// The id of a [`Response::Id`].
    pub fn into_id(self) -> Result<String> {
        match self {
            Response::Id(id) => Ok(id),
            other => Err(other.mismatch("id")),
        }
    }
}
