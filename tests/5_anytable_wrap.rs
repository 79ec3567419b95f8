//! A LiveTable wrapped with `AnyTable::from_table_like` and used only
//! through `AnyTable` / `TableLike`: reads, hits, per-id slots, pagination,
//! counts and metadata behave as on the master, and clones share the cache.
//!
//! `get_ref` is not covered: the bakery masters are built without
//! references, so there is no relation to traverse.

mod common;

use std::sync::Arc;

use common::{assert_rows, extra_product, master_rows, Instrumented, Rows, DOWN};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::{Cache, LiveTable, MemCache};
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

const ID: &str = "p03_cinnamon_roll";

fn p(page: i64, ipp: i64) -> Pagination {
    Pagination::new(page, ipp)
}

/// A LiveTable over `master` with a fresh MemCache, wrapped; plus an
/// unwrapped clone to ask for slot keys, and the cache.
fn wrap(master: AnyTable) -> (AnyTable, LiveTable, Arc<MemCache>) {
    let cache = Arc::new(MemCache::new());
    let live = LiveTable::new(master, "products", cache.clone());
    (AnyTable::from_table_like(live.clone()), live, cache)
}

/// Generic code: a page of titles, through nothing but `AnyTable`.
async fn titles(table: &AnyTable, pagination: Option<Pagination>) -> Vec<String> {
    let mut table = table.clone();
    table.set_pagination(pagination);
    let rows: Rows = table.list_values().await.unwrap();
    rows.iter()
        .map(|(id, record)| format!("{id}: {:?}", record.get("name")))
        .collect()
}

#[tokio::test]
async fn generic_code_cannot_tell_the_wrapper_from_the_master() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let (any, _, _) = wrap(master.table.clone());
        for pagination in [None, Some(p(1, 5)), Some(p(3, 5)), Some(p(9, 5))] {
            // Twice: the miss and the hit.
            for _ in 0..2 {
                assert_eq!(
                    titles(&any, pagination).await,
                    titles(&master.table, pagination).await,
                    "{what}: {pagination:?}"
                );
            }
        }
        assert!(
            any.datasource_name().contains("LiveTable"),
            "{what}: {}",
            any.datasource_name()
        );
    }
}

#[tokio::test]
async fn reads_through_anytable_fill_and_hit() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let (any, live, cache) = wrap(wrapped);
        let key = live.page_cache_key(None);
        assert!(cache.get(&key).await.unwrap().is_none());

        let direct = master_rows(&master.table, None).await;
        assert_rows(&any.list_values().await.unwrap(), &direct, what);
        let slot = cache.get(&key).await.unwrap().expect("filled");
        assert_rows(&slot.rows, &direct, what);
        assert_rows(&any.list_values().await.unwrap(), &direct, what);
        assert_eq!(probe.reads(), 1, "{what}: the second list is a hit");

        probe.set_down(true);
        assert_rows(
            &any.list_values().await.unwrap(),
            &direct,
            &format!("{what}: hit with the master down"),
        );
        let err = any.get_value(&ID.to_string()).await.unwrap_err();
        assert!(err.to_string().contains(DOWN), "{what}: cold id: {err}");
        let err = any.get_some_value().await.unwrap_err();
        assert!(err.to_string().contains(DOWN), "{what}: get_some: {err}");
    }
}

#[tokio::test]
async fn hit_through_anytable_after_the_sqlite_pool_is_closed() {
    common::init_tracing();
    let master = common::sqlite_master("product").await;
    let (any, _, _) = wrap(master.table.clone());
    let rows = any.list_values().await.unwrap();
    let row = any.get_value(&ID.to_string()).await.unwrap();
    let count = any.get_count().await.unwrap();

    master.sqlite.as_ref().unwrap().pool().close().await;
    assert!(master.table.list_values().await.is_err(), "master is gone");

    assert_rows(&any.list_values().await.unwrap(), &rows, "list hit");
    assert_eq!(any.get_value(&ID.to_string()).await.unwrap(), row);
    assert_eq!(any.get_count().await.unwrap(), count);
    let mut cold = any.clone();
    cold.set_pagination(Some(p(2, 5)));
    assert!(cold.list_values().await.is_err(), "a cold page fails");
}

#[tokio::test]
async fn per_id_slots_through_anytable() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let (any, live, cache) = wrap(wrapped);

        let expected = master.table.get_value(&ID.to_string()).await.unwrap();
        assert!(expected.is_some(), "{what}");
        assert_eq!(any.get_value(&ID.to_string()).await.unwrap(), expected);
        let slot = cache.get(&live.id_cache_key(ID)).await.unwrap();
        assert_eq!(
            slot.expect("id slot").rows.values().next(),
            expected.as_ref(),
            "{what}"
        );
        assert!(cache
            .get(&live.page_cache_key(None))
            .await
            .unwrap()
            .is_none());

        // A missing id answers None, and its absence is cached (the seed's
        // view of the slot is empty).
        let missing = "p13_new_bun".to_string();
        assert_eq!(any.get_value(&missing).await.unwrap(), None, "{what}");
        assert!(cache
            .get(&live.id_cache_key(&missing))
            .await
            .unwrap()
            .is_none());

        probe.set_down(true);
        assert_eq!(
            any.get_value(&ID.to_string()).await.unwrap(),
            expected,
            "{what}: hit with the master down"
        );
        assert_eq!(
            any.get_value(&missing).await.unwrap(),
            None,
            "{what}: the absence is a hit with the master down"
        );
    }
}

#[tokio::test]
async fn pagination_through_anytable() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let (mut any, live, cache) = wrap(wrapped);
        assert_eq!(any.get_pagination(), None, "{what}");

        any.set_pagination(Some(p(2, 10)));
        assert_eq!(any.get_pagination(), Some(&p(2, 10)), "{what}");
        let page = any.list_values().await.unwrap();
        assert_rows(
            &page,
            &master_rows(&master.table, Some(p(2, 10))).await,
            what,
        );
        assert_eq!(page.len(), 2, "{what}");
        let slot = cache.get(&live.page_cache_key(p(2, 10))).await.unwrap();
        assert_rows(&slot.expect("page slot").rows, &page, what);

        // `with_pagination` edits the current pagination in place.
        any.with_pagination(|pg| {
            pg.set_ipp(5);
            pg.set_page(2);
        });
        assert_eq!(any.get_pagination(), Some(&p(2, 5)), "{what}");
        assert_rows(
            &any.list_values().await.unwrap(),
            &master_rows(&master.table, Some(p(2, 5))).await,
            what,
        );
        assert!(cache
            .get(&live.page_cache_key(p(2, 5)))
            .await
            .unwrap()
            .is_some());

        // From no pagination, `with_pagination` starts at the default.
        any.set_pagination(None);
        assert_rows(
            &any.list_values().await.unwrap(),
            &master_rows(&master.table, None).await,
            what,
        );
        any.with_pagination(|pg| pg.set_page(1));
        assert_eq!(any.get_pagination(), Some(&Pagination::default()));
        assert_eq!(probe.reads(), 3, "{what}: three distinct slots so far");
        any.list_values().await.unwrap();
        assert_eq!(probe.reads(), 4, "{what}: the default page is a slot too");

        // Revisiting pages reads nothing.
        for pagination in [Some(p(2, 10)), Some(p(2, 5)), None] {
            any.set_pagination(pagination);
            any.list_values().await.unwrap();
        }
        assert_eq!(probe.reads(), 4, "{what}: revisits are hits");
    }
}

#[tokio::test]
async fn count_through_anytable() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let seeded = common::seed_len("product") as i64;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let (mut any, live, cache) = wrap(wrapped);

        assert_eq!(any.get_count().await.unwrap(), seeded, "{what}");
        assert!(cache.get(&live.count_cache_key()).await.unwrap().is_some());
        // Paginated (which the SQL backend alone refuses): the same slot.
        any.set_pagination(Some(p(2, 5)));
        assert_eq!(any.get_count().await.unwrap(), seeded, "{what}");
        assert_eq!(probe.reads(), 1, "{what}: one count read");
    }
}

#[tokio::test]
async fn paginated_count_through_anytable_over_sqlite() {
    common::init_tracing();
    let master = common::sqlite_master("product").await;
    let (mut any, _, _) = wrap(master.table.clone());
    any.set_pagination(Some(p(2, 5)));
    // Cold: the count must reach the master without pagination.
    assert_eq!(
        any.get_count().await.unwrap(),
        common::seed_len("product") as i64
    );
}

#[tokio::test]
async fn metadata_passes_through() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let m = &master.table;
        let (any, live, _) = wrap(m.clone());
        assert_eq!(any.table_name(), m.table_name(), "{what}");
        assert_eq!(any.table_name(), "product", "{what}");
        assert_eq!(any.table_alias(), m.table_alias(), "{what}");
        assert_eq!(any.column_names(), m.column_names(), "{what}");
        assert!(
            any.column_names().contains(&"name".to_string()),
            "{what}: {:?}",
            any.column_names()
        );
        assert_eq!(any.id_field_name(), m.id_field_name(), "{what}");
        assert_eq!(any.id_field_name().as_deref(), Some("id"), "{what}");
        assert_eq!(any.title_field_names(), m.title_field_names(), "{what}");
        assert_eq!(any.column_types(), m.column_types(), "{what}");
        assert!(!any.column_types().is_empty(), "{what}");
        assert_eq!(any.get_ref_names(), m.get_ref_names(), "{what}");
        // The same through the unwrapped LiveTable.
        assert_eq!(live.table_name(), m.table_name(), "{what}");
        assert_eq!(live.column_names(), m.column_names(), "{what}");
    }
}

#[tokio::test]
async fn add_condition_eq_through_anytable_returns_the_backend_error() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let (mut any, _, _) = wrap(wrapped);
        let rows = any.list_values().await.unwrap();

        let backend_err = master
            .table
            .clone()
            .add_condition_eq("name", "Brioche")
            .unwrap_err();
        let err = any.add_condition_eq("name", "Brioche").unwrap_err();
        assert_eq!(err.to_string(), backend_err.to_string(), "{what}");
        assert_rows(&any.list_values().await.unwrap(), &rows, what);
        assert_eq!(probe.reads(), 1, "{what}: view and slot unchanged");
    }
}

#[tokio::test]
async fn anytable_clones_share_the_cache() {
    common::init_tracing();
    for master in common::embedded_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let (any, _, _) = wrap(wrapped);
        let rows = any.list_values().await.unwrap();
        any.get_count().await.unwrap();

        let mut twin = any.clone();
        probe.set_down(true);
        assert_rows(&twin.list_values().await.unwrap(), &rows, what);
        assert_eq!(twin.get_count().await.unwrap(), rows.len() as i64, "{what}");
        assert_eq!(probe.reads(), 2, "{what}: the clone only hit");

        // Each clone keeps its own pagination.
        twin.set_pagination(Some(p(2, 5)));
        assert_eq!(any.get_pagination(), None, "{what}");
        assert!(twin.list_values().await.is_err(), "{what}: cold page");
        assert_rows(&any.list_values().await.unwrap(), &rows, what);

        // A write through one clone drops the slots every clone reads.
        probe.set_down(false);
        let id = "p13_new_bun".to_string();
        any.insert_value(&id, &extra_product("New Bun"))
            .await
            .unwrap();
        assert!(
            master.table.get_value(&id).await.unwrap().is_some(),
            "{what}: the write reached the master"
        );
        twin.set_pagination(None);
        let fresh = twin.list_values().await.unwrap();
        assert!(fresh.contains_key(&id), "{what}: invalidated for the clone");
        assert_rows(&fresh, &master_rows(&master.table, None).await, what);
    }
}
