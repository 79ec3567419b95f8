//! What a slot holds: [`CachedSlot`] (typed: a page, one row or its absence,
//! a count) and the seed's [`CachedRows`], with the mapping between them.

use std::sync::Arc;
use std::time::SystemTime;

use vantage_types::Record;

use super::slot::{split_key, unescape};
use crate::request::{Response, Rows, Value};

/// Rows stored in one cache slot, with the time they were fetched: the
/// seed's slot shape, which [`Cache::get`](super::Cache::get) and
/// [`Cache::put`](super::Cache::put) speak.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRows {
    /// The rows, keyed by id, in the master's order.
    pub rows: Rows,
    /// When the rows were read from the master.
    pub fetched_at: SystemTime,
}

impl CachedRows {
    /// `rows`, fetched now.
    pub fn new(rows: Rows) -> Self {
        Self {
            rows,
            fetched_at: SystemTime::now(),
        }
    }
}

/// Which kind of answer a slot holds, as its key says (see
/// [`SlotKeys`](super::SlotKeys)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// A list: one page at one page size, or the unpaginated list. Also any
    /// key not written by [`SlotKeys`](super::SlotKeys).
    Rows,
    /// One row by id.
    Row,
    /// The count of a view.
    Count,
}

impl SlotKind {
    /// The kind of the slot stored under `key`.
    pub fn of_key(key: &str) -> SlotKind {
        let (_, slot) = split_key(key);
        if slot.starts_with("id/") {
            SlotKind::Row
        } else if slot.starts_with("count/") {
            SlotKind::Count
        } else {
            SlotKind::Rows
        }
    }
}

/// A typed slot value, shared: what a read answered.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SlotValue {
    /// The rows of a list (a page at a page size, or the unpaginated list).
    Rows(Arc<Rows>),
    /// One row, or the fact that there is no such row in the view.
    Row(Option<Arc<Record<Value>>>),
    /// The number of rows of a view.
    Count(i64),
}

impl SlotValue {
    /// The kind of slot this value belongs in.
    pub fn kind(&self) -> SlotKind {
        match self {
            SlotValue::Rows(_) => SlotKind::Rows,
            SlotValue::Row(_) => SlotKind::Row,
            SlotValue::Count(_) => SlotKind::Count,
        }
    }

    /// The slot value for a read's `response`, sharing its rows (no copy),
    /// if the response is of `kind`.
    pub fn from_response(kind: SlotKind, response: &Response) -> Option<SlotValue> {
        match (kind, response) {
            (SlotKind::Rows, Response::Rows(rows)) => Some(SlotValue::Rows(rows.clone())),
            (SlotKind::Row, Response::Row(row)) => Some(SlotValue::Row(row.clone())),
            (SlotKind::Count, Response::Count(n)) => Some(SlotValue::Count(*n)),
            _ => None,
        }
    }

    /// The response this value answers with (no copy).
    pub fn into_response(self) -> Response {
        match self {
            SlotValue::Rows(rows) => Response::Rows(rows),
            SlotValue::Row(row) => Response::Row(row),
            SlotValue::Count(n) => Response::Count(n),
        }
    }
}

/// A typed slot as stored: its value and when it was read from the master.
///
/// Stored and handed out behind `Arc`s: a hit shares the rows, never copies
/// them, and a page already handed out never changes under its holder.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedSlot {
    /// The answer.
    pub value: SlotValue,
    /// When it was read from the master.
    pub fetched_at: SystemTime,
}

/// The id under which the seed's shape stores a count, as one row with one
/// field of that name.
pub const COUNT_ROW: &str = "count";

impl CachedSlot {
    /// `value`, fetched now.
    pub fn new(value: SlotValue) -> Self {
        Self {
            value,
            fetched_at: SystemTime::now(),
        }
    }

    /// This slot in the seed's shape, as [`Cache::get`](super::Cache::get)
    /// answers it for `key`:
    ///
    /// - rows as they are;
    /// - a row as one row under its id (taken from `key`); an absent row as
    ///   no slot at all (`None`), as the seed never stored absences;
    /// - a count as one row `count` with one field `count`.
    pub fn to_rows(&self, key: &str) -> Option<CachedRows> {
        let rows = match &self.value {
            SlotValue::Rows(rows) => Rows::clone(rows),
            SlotValue::Row(None) => return None,
            SlotValue::Row(Some(record)) => {
                let mut rows = Rows::with_capacity(1);
                rows.insert(row_id(key), Record::clone(record));
                rows
            }
            SlotValue::Count(n) => {
                let mut record = Record::with_capacity(1);
                record.insert(COUNT_ROW.to_string(), Value::Integer((*n).into()));
                let mut rows = Rows::with_capacity(1);
                rows.insert(COUNT_ROW.to_string(), record);
                rows
            }
        };
        Some(CachedRows {
            rows,
            fetched_at: self.fetched_at,
        })
    }

    /// The typed slot `rows` stand for under a key of `kind` (the inverse of
    /// [`CachedSlot::to_rows`]), or `None` if they do not have that kind's
    /// shape: a row slot holds exactly one row, a count slot exactly the one
    /// `count` row with an integer.
    pub fn from_rows(kind: SlotKind, rows: CachedRows) -> Option<CachedSlot> {
        let CachedRows { rows, fetched_at } = rows;
        let value = match kind {
            SlotKind::Rows => SlotValue::Rows(Arc::new(rows)),
            SlotKind::Row => {
                if rows.len() != 1 {
                    return None;
                }
                let (_, record) = rows.into_iter().next()?;
                SlotValue::Row(Some(Arc::new(record)))
            }
            SlotKind::Count => {
                if rows.len() != 1 {
                    return None;
                }
                let record = rows.get(COUNT_ROW)?;
                if record.len() != 1 {
                    return None;
                }
                match record.get(COUNT_ROW)? {
                    Value::Integer(n) => SlotValue::Count(i64::try_from(*n).ok()?),
                    _ => return None,
                }
            }
        };
        Some(CachedSlot { value, fetched_at })
    }
}

/// The row id of an id slot's key (`<namespace>/id/<conditions>/<id>`).
fn row_id(key: &str) -> String {
    let (_, slot) = split_key(key);
    let escaped = slot.rsplit('/').next().unwrap_or_default();
    unescape(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::SlotKeys;
    use crate::request::View;

    fn record(name: &str) -> Record<Value> {
        [("name".to_string(), Value::Text(name.into()))]
            .into_iter()
            .collect()
    }

    #[test]
    fn kinds_follow_the_key() {
        let k = SlotKeys::new("a/b");
        assert_eq!(SlotKind::of_key(&k.list(&View::new())), SlotKind::Rows);
        assert_eq!(SlotKind::of_key(&k.id(&View::new(), "x")), SlotKind::Row);
        assert_eq!(SlotKind::of_key(&k.count(&View::new())), SlotKind::Count);
        assert_eq!(SlotKind::of_key("clients/page_1"), SlotKind::Rows);
        assert_eq!(SlotKind::of_key("bare"), SlotKind::Rows);
    }

    #[test]
    fn the_seed_shape_round_trips() {
        let k = SlotKeys::new("shop");
        let key = k.id(&View::new().with_eq("a", "b/c"), "id/with=odd&chars%");
        let row = CachedSlot::new(SlotValue::Row(Some(Arc::new(record("x")))));
        let rows = row.to_rows(&key).expect("a present row has a seed shape");
        assert_eq!(rows.rows.keys().next().unwrap(), "id/with=odd&chars%");
        assert_eq!(CachedSlot::from_rows(SlotKind::Row, rows), Some(row));

        let absent = CachedSlot::new(SlotValue::Row(None));
        assert_eq!(absent.to_rows(&key), None);

        let count = CachedSlot::new(SlotValue::Count(42));
        let rows = count.to_rows(&k.count(&View::new())).unwrap();
        assert_eq!(CachedSlot::from_rows(SlotKind::Count, rows), Some(count));

        let mut two = Rows::new();
        two.insert("a".into(), record("a"));
        two.insert("b".into(), record("b"));
        let page = CachedSlot::new(SlotValue::Rows(Arc::new(two.clone())));
        let rows = page.to_rows(&k.list(&View::new())).unwrap();
        assert_eq!(
            CachedSlot::from_rows(SlotKind::Rows, rows.clone()),
            Some(page)
        );
        // Two rows are not one row, nor a count.
        assert_eq!(CachedSlot::from_rows(SlotKind::Row, rows.clone()), None);
        assert_eq!(CachedSlot::from_rows(SlotKind::Count, rows), None);
    }
}
