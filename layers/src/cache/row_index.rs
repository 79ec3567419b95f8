//! Row-level invalidation: what each stored slot of a namespace holds, and
//! which slots a change to one row can make wrong.
//!
//! See [`RowChange`] for which slots a change drops, and why.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::live_stream::LiveEvent;

/// A change to one row, as a write or a live event names it: what
/// [row-level invalidation](super::CacheLayer::with_row_invalidation) drops
/// for it.
///
/// # Which slots a change drops
///
/// A change names one row. Where the backend can vouch for what its slots
/// hold (see the last paragraph), it drops:
///
/// | slot                                        | [`Updated`]  | [`Inserted`] | [`Deleted`]                       |
/// |---------------------------------------------|--------------|--------------|-----------------------------------|
/// | any slot holding the row, or its `get` slot | dropped      | dropped      | dropped                           |
/// | plain (unconditioned) page not holding it   | **kept**     | dropped      | kept if before the first page of its page size holding the row, else dropped |
/// | plain unpaginated list not holding it       | **kept**     | dropped      | dropped                           |
/// | plain count                                 | **kept**     | dropped      | dropped                           |
/// | conditioned list, page or count             | dropped      | dropped      | as for plain ones, but a page size with no page holding the row drops all its pages |
/// | `get` slot of another row                   | **kept**     | **kept**     | **kept**                          |
///
/// Why a kept slot still answers what the master would answer now:
///
/// - every slot in the store answers what the master held after the last
///   change that reached this namespace's invalidations (that is what the
///   generation fence guarantees for every fill; see
///   [`Generations`](super::Generations));
/// - a `get` slot of row `b` depends on row `b` only;
/// - an update in place changes one row's fields: which rows a plain view
///   holds, and in which order, stays the same (this is the assumption the
///   user makes by turning row invalidation on: the master's order does not
///   depend on fields a write changes, as with vantage-redb's key order or a
///   SQL table ordered by its id), so a page that does not hold the row is
///   unchanged, and so is the plain count. A conditioned view may gain or
///   lose the row (its condition may be on a changed field), so its lists
///   and counts go;
/// - a delete shifts up the rows *after* the deleted one: pages entirely
///   before the first page that holds it keep their rows;
/// - an insert (or a replace, which SQLite makes a delete plus an insert)
///   can land anywhere: every list and count goes.
///
/// Anything the index cannot vouch for falls back to dropping the whole
/// namespace: see [`Namespace::start_row_drop`](super::Namespace::start_row_drop).
///
/// [`Updated`]: RowChange::Updated
/// [`Inserted`]: RowChange::Inserted
/// [`Deleted`]: RowChange::Deleted
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowChange {
    /// The row's fields changed in place; it kept its place among the
    /// others (a `patch`; [`LiveEvent::Updated`]).
    Updated(String),
    /// The row may be new, or may have moved (an `insert`, a `replace`, an
    /// `insert_return_id`; [`LiveEvent::Inserted`]).
    Inserted(String),
    /// The row is gone (a `delete`; [`LiveEvent::Deleted`]).
    Deleted(String),
}

impl RowChange {
    /// The change `event` reports; `None` for a bare
    /// [`LiveEvent::Changed`].
    pub fn of_event(event: &LiveEvent) -> Option<RowChange> {
        match event {
            LiveEvent::Changed => None,
            LiveEvent::Inserted { id } => Some(RowChange::Inserted(id.clone())),
            LiveEvent::Updated { id } => Some(RowChange::Updated(id.clone())),
            LiveEvent::Deleted { id } => Some(RowChange::Deleted(id.clone())),
        }
    }

    /// The row's id.
    pub fn id(&self) -> &str {
        match self {
            RowChange::Updated(id) | RowChange::Inserted(id) | RowChange::Deleted(id) => id,
        }
    }

    /// `updated`, `inserted` or `deleted`, as logs show it.
    pub fn kind(&self) -> &'static str {
        match self {
            RowChange::Updated(_) => "updated",
            RowChange::Inserted(_) => "inserted",
            RowChange::Deleted(_) => "deleted",
        }
    }
}

/// How many entries (slots, and (row, slot) pairs) one namespace's index
/// holds at most. Past it the index gives up (the next row-level change
/// drops the whole namespace, which starts the index afresh), so its memory
/// stays bounded even when the backend evicts slots the index still lists.
pub(crate) const MAX_INDEXED_PAIRS: usize = 200_000;

/// What a slot is, as its key says (see [`SlotKeys`](super::SlotKeys)).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    /// `list/<conditions>/p<page>x<ipp>`; `series` is `<conditions>/<ipp>`.
    Page {
        conditioned: bool,
        series: Box<str>,
        page: i64,
    },
    /// `list/<conditions>/all`.
    All { conditioned: bool },
    /// `count/<conditions>`.
    Count { conditioned: bool },
    /// `id/<conditions>/<id>`.
    Row,
    /// Anything else (a key not written by `SlotKeys`): every change drops it.
    Other,
}

impl Shape {
    fn of(slot: &str) -> Shape {
        let mut parts = slot.splitn(3, '/');
        let (kind, conditions, rest) = (parts.next(), parts.next(), parts.next());
        let conditioned = conditions.is_some_and(|c| c != "-");
        match (kind, conditions, rest) {
            (Some("count"), Some(_), None) => Shape::Count { conditioned },
            (Some("id"), Some(_), Some(_)) => Shape::Row,
            (Some("list"), Some(_), Some("all")) => Shape::All { conditioned },
            (Some("list"), Some(conditions), Some(page)) => {
                let parsed = page
                    .strip_prefix('p')
                    .and_then(|p| p.split_once('x'))
                    .and_then(|(page, ipp)| Some((page.parse().ok()?, ipp)));
                match parsed {
                    Some((page, ipp)) => Shape::Page {
                        conditioned,
                        series: format!("{conditions}/{ipp}").into(),
                        page,
                    },
                    None => Shape::Other,
                }
            }
            _ => Shape::Other,
        }
    }

    fn conditioned(&self) -> bool {
        match self {
            Shape::Page { conditioned, .. }
            | Shape::All { conditioned }
            | Shape::Count { conditioned } => *conditioned,
            Shape::Row | Shape::Other => false,
        }
    }
}

struct Indexed {
    shape: Shape,
    /// Every row the slot held in any fill recorded since it was last
    /// dropped (a refill adds to these: until it lands, the old answer may
    /// still be stored).
    rows: HashSet<Arc<str>>,
}

/// One namespace's index: kept under the namespace's lock, together with
/// the generation moves (see [`Namespace`](super::Namespace)).
#[derive(Default)]
pub(crate) struct RowIndex {
    /// Some layer over this namespace drops rows: fills are recorded.
    enabled: bool,
    /// Every slot the store may answer is recorded. False after a fill the
    /// index did not see (before it was enabled, a raw `put`, slots an
    /// earlier process left), after an overflow, and after a whole drop that
    /// failed; true again when a whole drop starts (it removes every slot
    /// there is).
    complete: bool,
    /// Fills stored while the index was off: enabling it later cannot vouch
    /// for them.
    unrecorded: u64,
    /// Whole drops in progress: until they end, slots they will remove may
    /// still be answered, unrecorded (the index forgot them when they
    /// started), so no row-level drop is trusted meanwhile.
    whole_drops: usize,
    slots: HashMap<Arc<str>, Indexed>,
    by_row: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// The slots that are not `get` slots (lists, pages, counts, others),
    /// and those of them a patch can change without holding the row
    /// (conditioned ones, others): what a change looks at besides the
    /// slots holding its row, so that it never walks every `get` slot.
    lists: HashSet<Arc<str>>,
    conditioned: HashSet<Arc<str>>,
    pairs: usize,
}

impl RowIndex {
    /// Start recording fills; complete if no fill was ever stored without
    /// it.
    pub(crate) fn enable(&mut self, nothing_stored: bool) {
        if !self.enabled {
            self.enabled = true;
            self.complete = nothing_stored && self.unrecorded == 0;
        }
    }

    /// Whether a row-level drop can be trusted now.
    pub(crate) fn vouches(&self) -> bool {
        self.enabled && self.complete && self.whole_drops == 0
    }

    /// A slot is about to be stored without the index knowing what it
    /// holds.
    pub(crate) fn unrecorded_store(&mut self) {
        if self.enabled {
            self.forget();
        } else {
            self.unrecorded += 1;
        }
    }

    /// Stop vouching (until a whole drop succeeds) and let go of the
    /// entries.
    pub(crate) fn forget(&mut self) {
        self.complete = false;
        self.clear();
    }

    fn clear(&mut self) {
        self.slots = HashMap::new();
        self.by_row = HashMap::new();
        self.lists = HashSet::new();
        self.conditioned = HashSet::new();
        self.pairs = 0;
    }

    /// `slot` is about to be stored holding `rows` (a `get` slot: its id,
    /// whether the row exists or not). Call before the store.
    pub(crate) fn record<'a>(&mut self, slot: &str, rows: impl Iterator<Item = &'a str>) {
        if !self.enabled {
            self.unrecorded += 1;
            return;
        }
        if !self.complete {
            return;
        }
        let slot: Arc<str> = match self.slots.get_key_value(slot) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Arc<str> = slot.into();
                let shape = Shape::of(slot);
                if shape != Shape::Row {
                    self.lists.insert(key.clone());
                    if shape.conditioned() || shape == Shape::Other {
                        self.conditioned.insert(key.clone());
                    }
                }
                self.slots.insert(
                    key.clone(),
                    Indexed {
                        shape,
                        rows: HashSet::new(),
                    },
                );
                // A slot counts as one entry, rows or not.
                self.pairs += 1;
                key
            }
        };
        for row in rows {
            let row: Arc<str> = match self.by_row.get_key_value(row) {
                Some((key, _)) => key.clone(),
                None => row.into(),
            };
            let entry = self.slots.get_mut(&slot).expect("inserted above");
            if entry.rows.insert(row.clone()) {
                self.by_row.entry(row).or_default().insert(slot.clone());
                self.pairs += 1;
            }
        }
        if self.pairs > MAX_INDEXED_PAIRS {
            self.forget();
        }
    }

    /// A whole drop started: it removes every slot, so the index starts
    /// afresh (and complete), but vouches for nothing until it ends.
    pub(crate) fn whole_drop_started(&mut self) {
        self.whole_drops += 1;
        if self.enabled {
            self.clear();
            self.complete = true;
        }
    }

    /// A whole drop ended; if it failed, slots it should have removed may
    /// remain, unrecorded.
    pub(crate) fn whole_drop_ended(&mut self, dropped: bool) {
        self.whole_drops = self.whole_drops.saturating_sub(1);
        if !dropped {
            self.forget();
        }
    }

    /// The slots `change` can make wrong, removed from the index. Call only
    /// when [`RowIndex::vouches`].
    pub(crate) fn take(&mut self, change: &RowChange) -> Vec<Arc<str>> {
        let holding: HashSet<Arc<str>> = self.by_row.get(change.id()).cloned().unwrap_or_default();
        // For a delete: per page size (and conditions), the first page that
        // holds the row; pages before it keep their rows.
        let mut first_page: HashMap<&str, i64> = HashMap::new();
        if let RowChange::Deleted(_) = change {
            for slot in &holding {
                if let Some(Indexed {
                    shape: Shape::Page { series, page, .. },
                    ..
                }) = self.slots.get(slot)
                {
                    let first = first_page.entry(series).or_insert(*page);
                    *first = (*first).min(*page);
                }
            }
        }
        // Besides the slots holding the row, a patch can change only
        // conditioned views; an insert or a delete, any list or count.
        let others = match change {
            RowChange::Updated(_) => &self.conditioned,
            RowChange::Inserted(_) | RowChange::Deleted(_) => &self.lists,
        };
        let doomed: Vec<Arc<str>> = holding
            .iter()
            .chain(others.iter().filter(|slot| !holding.contains(*slot)))
            .filter(|slot| {
                if holding.contains(*slot) {
                    return true;
                }
                let Some(indexed) = self.slots.get(*slot) else {
                    return false;
                };
                match (&indexed.shape, change) {
                    (Shape::Other, _) => true,
                    (Shape::Row, _) => false,
                    (shape, RowChange::Updated(_)) => shape.conditioned(),
                    (_, RowChange::Inserted(_)) => true,
                    (Shape::Page { series, page, .. }, RowChange::Deleted(_)) => {
                        first_page.get(&**series).is_none_or(|first| page >= first)
                    }
                    (_, RowChange::Deleted(_)) => true,
                }
            })
            .cloned()
            .collect();
        for slot in &doomed {
            self.remove(slot);
        }
        doomed
    }

    fn remove(&mut self, slot: &str) {
        let Some(indexed) = self.slots.remove(slot) else {
            return;
        };
        self.lists.remove(slot);
        self.conditioned.remove(slot);
        self.pairs -= 1;
        for row in indexed.rows {
            self.pairs -= 1;
            if let Some(slots) = self.by_row.get_mut(&row) {
                slots.remove(slot);
                if slots.is_empty() {
                    self.by_row.remove(&row);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> RowIndex {
        let mut index = RowIndex::default();
        index.enable(true);
        index
    }

    fn names(mut slots: Vec<Arc<str>>) -> Vec<String> {
        slots.sort();
        slots.iter().map(|s| s.to_string()).collect()
    }

    fn scrolled() -> RowIndex {
        let mut index = index();
        for page in 1..=4 {
            let rows: Vec<String> = (0..3).map(|i| format!("r{}", (page - 1) * 3 + i)).collect();
            index.record(
                &format!("list/-/p{page}x3"),
                rows.iter().map(String::as_str),
            );
        }
        index.record("count/-", std::iter::empty());
        index.record("list/eq:kind=bun/p1x3", ["r1"].into_iter());
        index.record("count/eq:kind=bun", std::iter::empty());
        index.record("id/-/r4", ["r4"].into_iter());
        index.record("id/-/r9", ["r9"].into_iter());
        index
    }

    #[test]
    fn an_update_drops_what_holds_the_row_and_conditioned_views() {
        let mut index = scrolled();
        let doomed = index.take(&RowChange::Updated("r4".into()));
        assert_eq!(
            names(doomed),
            [
                "count/eq:kind=bun",
                "id/-/r4",
                "list/-/p2x3",
                "list/eq:kind=bun/p1x3"
            ]
        );
        // Dropped slots left the index: a second update drops only what
        // was filled since.
        let again = index.take(&RowChange::Updated("r4".into()));
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_delete_keeps_the_pages_before_the_row() {
        let mut index = scrolled();
        let doomed = index.take(&RowChange::Deleted("r4".into()));
        assert_eq!(
            names(doomed),
            [
                "count/-",
                "count/eq:kind=bun",
                "id/-/r4",
                "list/-/p2x3",
                "list/-/p3x3",
                "list/-/p4x3",
                // No page of this series holds r4: where it was is unknown.
                "list/eq:kind=bun/p1x3",
            ]
        );
    }

    #[test]
    fn an_insert_drops_every_list_and_count_but_not_other_rows() {
        let mut index = scrolled();
        let doomed = index.take(&RowChange::Inserted("r4".into()));
        let doomed = names(doomed);
        assert!(doomed.contains(&"id/-/r4".to_string()));
        assert!(!doomed.contains(&"id/-/r9".to_string()));
        assert_eq!(doomed.len(), 8, "{doomed:?}");
    }

    #[test]
    fn a_refill_keeps_the_rows_the_old_answer_held() {
        let mut index = index();
        index.record("list/-/p1x3", ["a", "b"].into_iter());
        // A refresh about to store other rows: the old answer stays stored
        // until it lands, so both must lead to the slot.
        index.record("list/-/p1x3", ["a", "c"].into_iter());
        assert_eq!(index.take(&RowChange::Updated("b".into())).len(), 1);
    }

    #[test]
    fn it_vouches_only_when_it_saw_every_store() {
        let mut late = RowIndex::default();
        late.record("list/-/all", ["a"].into_iter());
        late.enable(false);
        assert!(!late.vouches(), "fills before it was enabled");

        let mut index = index();
        assert!(index.vouches());
        index.unrecorded_store();
        assert!(!index.vouches(), "a raw put");
        index.whole_drop_started();
        assert!(!index.vouches(), "a whole drop in progress");
        index.whole_drop_ended(true);
        assert!(
            index.vouches(),
            "a whole drop that succeeded starts it afresh"
        );
        index.whole_drop_started();
        index.whole_drop_ended(false);
        assert!(!index.vouches(), "a failed whole drop may leave slots");
    }

    #[test]
    fn it_gives_up_past_its_bound() {
        let mut index = index();
        let rows: Vec<String> = (0..=MAX_INDEXED_PAIRS).map(|i| i.to_string()).collect();
        index.record("list/-/all", rows.iter().map(String::as_str));
        assert!(!index.vouches());
        assert_eq!(index.pairs, 0);
    }

    #[test]
    fn shapes_come_from_keys() {
        assert_eq!(Shape::of("count/-"), Shape::Count { conditioned: false });
        assert_eq!(Shape::of("id/eq:a=1/x%2Fy"), Shape::Row);
        assert_eq!(
            Shape::of("list/eq:a=1/p2x10"),
            Shape::Page {
                conditioned: true,
                series: "eq:a=1/10".into(),
                page: 2
            }
        );
        assert_eq!(Shape::of("list/-/all"), Shape::All { conditioned: false });
        assert_eq!(Shape::of("something/else"), Shape::Other);
    }
}
