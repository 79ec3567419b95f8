//! `with_custom_write_target`: writes go through the queue to the target
//! only; reads stay on the master; a successful write drops the LiveTable's
//! own cache_key.

mod common;

use std::sync::Arc;

use common::{field, product, Master, Recording};
use vantage_dataset::prelude::{InsertableValueSet, ReadableValueSet, WritableValueSet};
use vantage_live::{Cache, LiveTable, MemCache};
use vantage_types::Record;

/// (master, target) pairs of different backends.
async fn pairs() -> Vec<(Master, Master)> {
    vec![
        (
            common::redb_master("product").await,
            common::sqlite_master("product").await,
        ),
        (
            common::sqlite_master("product").await,
            common::redb_master("product").await,
        ),
    ]
}

fn price(n: i64) -> Record<ciborium::Value> {
    [("price".to_string(), ciborium::Value::Integer(n.into()))]
        .into_iter()
        .collect()
}

#[tokio::test]
async fn writes_reach_the_target_only_and_reads_come_from_the_master() {
    common::init_tracing();
    for (master, target) in pairs().await {
        let what = format!("{} master, {} target", master.kind, target.kind);
        // Both wrapped, to see which one the writes go through.
        let (master_table, master_writes) = Recording::around(master.table.clone()).build();
        let (target_table, target_writes) = Recording::around(target.table.clone()).build();
        let live = LiveTable::new(master_table, "products", Arc::new(MemCache::new()))
            .with_custom_write_target(target_table);
        let master_rows = master.table.list_values().await.unwrap();

        let new = "p30_pie".to_string();
        live.insert_value(&new, &product("Apple Pie", 330))
            .await
            .unwrap();
        live.patch_value(&"p01_baguette".to_string(), &price(1))
            .await
            .unwrap();
        live.delete(&"p02_brioche".to_string()).await.unwrap();
        let generated = live
            .insert_return_id_value(&product("Plum Tart", 280))
            .await
            .unwrap();

        assert_eq!(
            target_writes.applied(),
            [
                "insert p30_pie".to_string(),
                "patch p01_baguette".to_string(),
                "delete p02_brioche".to_string(),
                format!("insert {generated}"),
            ],
            "{what}: the target got every write, in order"
        );
        assert!(
            master_writes.applied().is_empty(),
            "{what}: the master got none"
        );

        // The target has the writes.
        let on_target = target.table.list_values().await.unwrap();
        assert_eq!(field(&on_target[&new], "name"), "Apple Pie", "{what}");
        assert!(on_target.contains_key(&generated), "{what}");
        assert!(!on_target.contains_key("p02_brioche"), "{what}");
        assert_eq!(
            common::int_field(&on_target["p01_baguette"], "price"),
            Some(1),
            "{what}"
        );

        // The master and the LiveTable's reads do not.
        assert_eq!(
            master.table.list_values().await.unwrap(),
            master_rows,
            "{what}"
        );
        assert_eq!(live.list_values().await.unwrap(), master_rows, "{what}");
        assert!(live.get_value(&new).await.unwrap().is_none(), "{what}");
        assert!(
            live.get_value(&generated).await.unwrap().is_none(),
            "{what}"
        );
        let baguette = live.get_value(&"p01_baguette".to_string()).await.unwrap();
        assert_eq!(
            common::int_field(&baguette.unwrap(), "price"),
            Some(180),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_write_to_the_target_drops_the_live_table_s_own_cache_key() {
    for (master, target) in pairs().await {
        let what = format!("{} master, {} target", master.kind, target.kind);
        let cache = Arc::new(MemCache::new());
        let live = LiveTable::new(master.table.clone(), "products", cache.clone())
            .with_custom_write_target(target.table.clone());
        // Another cache_key in the same backend, e.g. the target's own view.
        let other = LiveTable::new(target.table.clone(), "submissions", cache.clone());

        live.list_values().await.unwrap();
        other.list_values().await.unwrap();
        let page = live.page_cache_key(None);
        let other_page = other.page_cache_key(None);
        assert!(live.cache().get(&page).await.unwrap().is_some(), "{what}");

        // Rejected by the target: nothing is dropped.
        let error = live
            .patch_value(&"p99_missing".to_string(), &price(1))
            .await
            .unwrap_err();
        let expected = match target.kind {
            "redb" => "Cannot patch missing row",
            _ => "Row not found after patch",
        };
        assert!(error.to_string().contains(expected), "{what}: {error}");
        assert!(live.cache().get(&page).await.unwrap().is_some(), "{what}");

        // Accepted: this LiveTable's cache_key is dropped, no other.
        live.delete(&"p03_cinnamon_roll".to_string()).await.unwrap();
        assert!(live.cache().get(&page).await.unwrap().is_none(), "{what}");
        assert!(
            cache.get(&other_page).await.unwrap().is_some(),
            "{what}: the other cache_key is untouched"
        );
        // Refilled from the master, which still has the row.
        assert!(
            live.list_values()
                .await
                .unwrap()
                .contains_key("p03_cinnamon_roll"),
            "{what}"
        );
    }
}
