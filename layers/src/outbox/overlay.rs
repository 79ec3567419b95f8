//! Pending writes laid over the master's answers: what a read shows while
//! writes wait in the outbox. The rules are written down in the module docs
//! ("Reads see your own pending writes").

use std::collections::HashMap;
use std::sync::Arc;

use ciborium::Value as Cbor;
use indexmap::IndexMap;
use vantage_types::Record;

use super::entry::{OutboxOp, PendingWrite};
use crate::request::{Rows, Value, View};

/// A snapshot of the pending writes, indexed by the row they touch.
pub(crate) struct Overlay<'a> {
    writes: &'a [Arc<PendingWrite>],
    by_id: HashMap<&'a str, Vec<usize>>,
    delete_alls: Vec<usize>,
    /// Ids whose writes include an insert or a replace, in the order of the
    /// first such write.
    adds: Vec<&'a str>,
}

/// A row of a view, after the overlay: `None` if it is gone from the view.
type Outcome = Option<Record<Value>>;

impl<'a> Overlay<'a> {
    pub(crate) fn new(writes: &'a [Arc<PendingWrite>]) -> Self {
        let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut delete_alls = Vec::new();
        let mut adds = Vec::new();
        for (i, write) in writes.iter().enumerate() {
            match write.op.id() {
                Some(id) => {
                    let entry = by_id.entry(id).or_default();
                    if write.op.adds_rows() && !entry.iter().any(|&j| writes[j].op.adds_rows()) {
                        adds.push(id);
                    }
                    entry.push(i);
                }
                None => delete_alls.push(i),
            }
        }
        Self {
            writes,
            by_id,
            delete_alls,
            adds,
        }
    }

    /// Whether any pending write can change row `id`.
    pub(crate) fn touches(&self, id: &str) -> bool {
        !self.delete_alls.is_empty() || self.by_id.contains_key(id)
    }

    /// Whether row `id`'s state after the pending writes does not depend on
    /// what the master holds for it: one of its writes sets or removes the
    /// whole row (an insert, a replace or a delete).
    pub(crate) fn decides(&self, id: &str) -> bool {
        self.by_id.get(id).is_some_and(|writes| {
            writes.iter().any(|&i| {
                matches!(
                    self.writes[i].op,
                    OutboxOp::Insert { .. }
                        | OutboxOp::InsertReturnId { .. }
                        | OutboxOp::Replace { .. }
                        | OutboxOp::Delete { .. }
                )
            })
        })
    }

    /// Whether any pending write may add a row to a view.
    pub(crate) fn adds_rows(&self) -> bool {
        !self.adds.is_empty()
    }

    /// Row `id` of `view` after the pending writes, given what the master
    /// answered for it (`base`: `Some` if the row is in the view). `opaque`:
    /// the view's conditions cannot be evaluated here, so a row the master
    /// did not list stays out of it.
    pub(crate) fn row(
        &self,
        view: &View,
        id: &str,
        base: Option<&Record<Value>>,
        opaque: bool,
    ) -> Outcome {
        if !self.touches(id) {
            return base.cloned();
        }
        let in_view = base.is_some();
        let mut row = base.cloned();
        // Whether the row must be checked against the view's conditions at
        // the end: it was written whole, or a condition field was patched.
        let mut check = false;
        let own = self.by_id.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let mut own = own.iter().copied().peekable();
        let mut alls = self.delete_alls.iter().copied().peekable();
        loop {
            // Apply this row's writes and the delete-alls in sequence order.
            let next = match (own.peek(), alls.peek()) {
                (Some(&a), Some(&b)) if b < a => alls.next(),
                (Some(_), _) => own.next(),
                (None, Some(_)) => alls.next(),
                (None, None) => break,
            };
            let Some(i) = next else { break };
            match &self.writes[i].op {
                OutboxOp::Insert { record, .. }
                | OutboxOp::InsertReturnId { record, .. }
                | OutboxOp::Replace { record, .. } => {
                    row = Some(record.clone());
                    check = true;
                }
                OutboxOp::Patch { partial, .. } => {
                    if let Some(row) = row.as_mut() {
                        for (field, value) in partial.iter() {
                            row.insert(field.clone(), value.clone());
                        }
                        if view
                            .eq_conditions()
                            .iter()
                            .any(|(field, _)| partial.contains_key(field))
                        {
                            check = true;
                        }
                    }
                }
                OutboxOp::Delete { .. } => row = None,
                OutboxOp::DeleteAll { eq } => {
                    if row.as_ref().is_some_and(|r| matches(eq, r)) {
                        row = None;
                    }
                }
            }
        }
        let row = row?;
        if opaque && !in_view {
            return None;
        }
        if (check || !in_view) && !opaque && !matches(view.eq_conditions(), &row) {
            return None;
        }
        Some(row)
    }

    /// The rows the pending writes add to `view` that the master does not
    /// list in it (`listed`), in the order of their first insert or replace.
    pub(crate) fn added(
        &self,
        view: &View,
        listed: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, Record<Value>)> {
        self.adds
            .iter()
            .filter(|id| !listed(id))
            .filter_map(|id| {
                self.row(view, id, None, false)
                    .map(|row| ((*id).to_string(), row))
            })
            .collect()
    }

    /// The whole (unpaginated) view after the pending writes: the master's
    /// rows in the master's order, with pending writes applied and removed
    /// rows dropped, then the added rows.
    pub(crate) fn list(&self, view: &View, master: &Rows, opaque: bool) -> Rows {
        let mut out: Rows = IndexMap::with_capacity(master.len() + self.adds.len());
        for (id, row) in master {
            if let Some(row) = self.row(view, id, Some(row), opaque) {
                out.insert(id.clone(), row);
            }
        }
        if !opaque {
            for (id, row) in self.added(view, &|id| master.contains_key(id)) {
                out.insert(id, row);
            }
        }
        out
    }

    /// One page of the view, from the whole view as the master lists it
    /// (`full`): positions `skip..skip + ipp` of the master's rows followed
    /// by the added rows. A row a pending write removes leaves its place
    /// empty (the page is short by one) rather than pulling a row over from
    /// the next page, so no row is shown on two pages or on none.
    pub(crate) fn page(&self, view: &View, full: &Rows, skip: usize, ipp: usize) -> Rows {
        let added = self.added(view, &|id| full.contains_key(id));
        let mut out: Rows = IndexMap::with_capacity(ipp);
        for position in skip..skip.saturating_add(ipp) {
            if let Some((id, row)) = full.get_index(position) {
                if let Some(row) = self.row(view, id, Some(row), false) {
                    out.insert(id.clone(), row);
                }
            } else if let Some((id, row)) = added.get(position - full.len()) {
                out.insert(id.clone(), row.clone());
            } else {
                break;
            }
        }
        out
    }

    /// A page the master answered, with pending writes applied to its rows
    /// (used when no pending write adds rows: nothing moves between pages).
    pub(crate) fn page_in_place(&self, view: &View, page: &Rows, opaque: bool) -> Rows {
        let mut out: Rows = IndexMap::with_capacity(page.len());
        for (id, row) in page {
            if let Some(row) = self.row(view, id, Some(row), opaque) {
                out.insert(id.clone(), row);
            }
        }
        out
    }
}

/// Whether `row` meets every `field = value` condition, comparing the
/// field's value with the condition's text: text as is, numbers in decimal,
/// booleans as `true`/`false` or `1`/`0`. With no conditions, every row
/// does.
pub(crate) fn matches(eq: &[(String, String)], row: &Record<Value>) -> bool {
    eq.iter().all(|(field, text)| {
        row.get(field)
            .is_some_and(|value| value_matches(value, text))
    })
}

fn value_matches(value: &Cbor, text: &str) -> bool {
    match value {
        Cbor::Text(t) => t == text,
        Cbor::Integer(i) => {
            let i = i128::from(*i);
            i.to_string() == text
                || (i == 1 && matches!(text, "true" | "t"))
                || (i == 0 && matches!(text, "false" | "f"))
        }
        Cbor::Bool(b) => match text {
            "true" | "t" | "1" => *b,
            "false" | "f" | "0" => !*b,
            _ => false,
        },
        Cbor::Float(f) => text.parse::<f64>().is_ok_and(|t| t == *f),
        Cbor::Null => text.eq_ignore_ascii_case("null"),
        _ => false,
    }
}

/// Whether `got` (the master's row) holds what `written` wrote: every field
/// written is there with the same value. The master may add fields (its id
/// column, defaults) and store a boolean as 0/1 or a whole float as an
/// integer; those count as the same.
pub(crate) fn holds(got: &Record<Value>, written: &Record<Value>) -> bool {
    written.iter().all(|(field, value)| {
        got.get(field)
            .is_some_and(|stored| same_value(stored, value))
    })
}

fn same_value(a: &Cbor, b: &Cbor) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Cbor::Bool(x), Cbor::Integer(i)) | (Cbor::Integer(i), Cbor::Bool(x)) => {
            i128::from(*i) == i128::from(*x)
        }
        (Cbor::Integer(i), Cbor::Float(f)) | (Cbor::Float(f), Cbor::Integer(i)) => {
            i128::from(*i) as f64 == *f
        }
        (Cbor::Null, Cbor::Null) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn rec(pairs: &[(&str, Cbor)]) -> Record<Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn price(p: i64) -> Record<Value> {
        rec(&[("price", Cbor::Integer(p.into()))])
    }

    fn pending(ops: Vec<OutboxOp>) -> Vec<Arc<PendingWrite>> {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| {
                Arc::new(PendingWrite {
                    seq: i as u64 + 1,
                    op,
                    accepted_at: SystemTime::now(),
                })
            })
            .collect()
    }

    fn master(n: usize) -> Rows {
        (0..n)
            .map(|i| (format!("r{i:02}"), price(i as i64)))
            .collect()
    }

    #[test]
    fn pages_never_lose_or_repeat_a_row() {
        let writes = pending(vec![
            OutboxOp::Insert {
                id: "new1".into(),
                record: price(100),
            },
            OutboxOp::Delete { id: "r01".into() },
            OutboxOp::Insert {
                id: "new2".into(),
                record: price(200),
            },
            OutboxOp::Patch {
                id: "r03".into(),
                partial: price(33),
            },
        ]);
        let overlay = Overlay::new(&writes);
        let view = View::new();
        for n in [0, 1, 4, 5, 6, 9, 10] {
            let full = master(n);
            let whole = overlay.list(&view, &full, false);
            for ipp in [1, 2, 3, 5] {
                let mut seen = Vec::new();
                for p in 0..(n + 4) {
                    let page = overlay.page(&view, &full, p * ipp, ipp);
                    assert!(page.len() <= ipp);
                    seen.extend(page);
                }
                let whole_rows: Vec<_> = whole.clone().into_iter().collect();
                assert_eq!(seen, whole_rows, "n={n} ipp={ipp}");
            }
        }
    }

    #[test]
    fn rows_follow_their_writes_in_order() {
        let writes = pending(vec![
            OutboxOp::Delete { id: "a".into() },
            OutboxOp::Insert {
                id: "a".into(),
                record: price(1),
            },
            OutboxOp::Patch {
                id: "a".into(),
                partial: price(2),
            },
            OutboxOp::Patch {
                id: "missing".into(),
                partial: price(9),
            },
        ]);
        let overlay = Overlay::new(&writes);
        let view = View::new();
        assert_eq!(
            overlay.row(&view, "a", Some(&price(0)), false),
            Some(price(2))
        );
        assert_eq!(overlay.row(&view, "a", None, false), Some(price(2)));
        assert_eq!(overlay.row(&view, "missing", None, false), None);
        assert_eq!(
            overlay.row(&view, "b", Some(&price(5)), false),
            Some(price(5))
        );
    }

    #[test]
    fn conditions_and_delete_all() {
        let rye = |p: i64| {
            rec(&[
                ("bakery", Cbor::Text("rye".into())),
                ("price", Cbor::Integer(p.into())),
            ])
        };
        let writes = pending(vec![
            OutboxOp::Patch {
                id: "moved".into(),
                partial: rec(&[("bakery", Cbor::Text("oat".into()))]),
            },
            OutboxOp::Insert {
                id: "elsewhere".into(),
                record: rec(&[("bakery", Cbor::Text("oat".into()))]),
            },
            OutboxOp::Insert {
                id: "here".into(),
                record: rye(5),
            },
            OutboxOp::DeleteAll {
                eq: vec![("price".into(), "7".into())],
            },
        ]);
        let overlay = Overlay::new(&writes);
        let view = View::new().with_eq("bakery", "rye");
        let master: Rows = [
            ("moved".to_string(), rye(1)),
            ("kept".to_string(), rye(2)),
            ("seven".to_string(), rye(7)),
        ]
        .into_iter()
        .collect();
        let got = overlay.list(&view, &master, false);
        let ids: Vec<_> = got.keys().cloned().collect();
        assert_eq!(ids, ["kept", "here"]);
    }

    #[test]
    fn loose_equality_for_replay_checks() {
        let written = rec(&[
            ("flag", Cbor::Bool(true)),
            ("n", Cbor::Float(3.0)),
            ("s", Cbor::Text("x".into())),
        ]);
        let stored = rec(&[
            ("id", Cbor::Text("k".into())),
            ("flag", Cbor::Integer(1.into())),
            ("n", Cbor::Integer(3.into())),
            ("s", Cbor::Text("x".into())),
        ]);
        assert!(holds(&stored, &written));
        let other = rec(&[("flag", Cbor::Integer(0.into()))]);
        assert!(!holds(&other, &written));
    }
}
