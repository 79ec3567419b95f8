//! Read path: miss, fill, hit, over real masters.
//!
//! A hit is proven by making the master fail and reading again: either with
//! the `Instrumented` down switch (a thin wrapper around the real table) or,
//! for SQLite, by closing the connection pool for real.
//!
//! Not covered here: the opaque-condition bypass (`add_condition` /
//! `temp_add_condition` on a LiveTable). Every 0.4 master wrapped with
//! `AnyTable::from_table` goes through vantage-table's `CborAdapter`, which
//! rejects both calls whatever the condition, so no real master can hold an
//! opaque condition. What *is* covered: the master's rejection comes back
//! from the LiveTable and leaves it cacheable.

mod common;

use std::sync::Arc;

use common::{assert_rows, extra_product, master_rows, Instrumented, DOWN};
use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::cache::SlotKeys;
use vantage_live::{Cache, LiveTable, MemCache, NoCache};
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

const ID: &str = "p03_cinnamon_roll";
const OTHER_ID: &str = "p07_pain_au_chocolat";

#[tokio::test]
async fn miss_then_fill_then_hit() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let cache = Arc::new(MemCache::new());
        let live = common::live(master.table.clone(), "products", cache.clone());
        let key = live.page_cache_key(None);
        assert!(
            cache.get(&key).await.unwrap().is_none(),
            "{}: cold",
            master.kind
        );
        let first = live.list_values().await.unwrap();
        let direct = master.table.list_values().await.unwrap();
        assert_eq!(first.len(), common::seed_len("product"), "{}", master.kind);
        assert_rows(
            &first,
            &direct,
            &format!("{}: miss returns the master's rows", master.kind),
        );
        let cached = cache.get(&key).await.unwrap().expect("filled");
        assert_rows(&cached.rows, &direct, master.kind);
        let second = live.list_values().await.unwrap();
        assert_rows(&second, &direct, master.kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_is_served_while_the_master_is_down() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for tc in common::storing_caches() {
            let what = format!("{} over {}", tc.name, master.kind);
            let (wrapped, probe) = Instrumented::wrap(master.table.clone());
            let live = common::live(wrapped, "products", tc.cache.clone());
            let direct = master.table.list_values().await.unwrap();
            assert_rows(&live.list_values().await.unwrap(), &direct, &what);

            probe.set_down(true);
            assert_rows(
                &live.list_values().await.unwrap(),
                &direct,
                &format!("{what}: hit with the master down"),
            );

            // Cold slots go to the master and get its error.
            let err = live.get_value(&ID.to_string()).await.unwrap_err();
            assert!(err.to_string().contains(DOWN), "{what}: {err}");
            let err = live.get_count().await.unwrap_err();
            assert!(err.to_string().contains(DOWN), "{what}: {err}");
            let mut page = live.clone();
            page.set_pagination(Some(Pagination::new(2, 5)));
            let err = page.list_values().await.unwrap_err();
            assert!(err.to_string().contains(DOWN), "{what}: {err}");

            // A failed read fills nothing...
            assert!(tc
                .cache
                .get(&live.id_cache_key(ID))
                .await
                .unwrap()
                .is_none());
            assert!(tc
                .cache
                .get(&live.count_cache_key())
                .await
                .unwrap()
                .is_none());
            // ...and the next read, with the master back, does.
            probe.set_down(false);
            let row = live.get_value(&ID.to_string()).await.unwrap();
            assert_eq!(row, master.table.get_value(&ID.to_string()).await.unwrap());
            assert!(tc
                .cache
                .get(&live.id_cache_key(ID))
                .await
                .unwrap()
                .is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_is_served_after_the_sqlite_pool_is_closed() {
    common::init_tracing();
    let master = common::sqlite_master("product").await;
    let cache = Arc::new(MemCache::new());
    let live = common::live(master.table.clone(), "products", cache.clone());
    let rows = live.list_values().await.unwrap();
    let row = live.get_value(&ID.to_string()).await.unwrap();
    let count = live.get_count().await.unwrap();
    assert_eq!(rows.len(), common::seed_len("product"));
    assert!(row.is_some());

    master.sqlite.as_ref().unwrap().pool().close().await;
    assert!(
        master.table.list_values().await.is_err(),
        "the master really is gone"
    );

    assert_rows(&live.list_values().await.unwrap(), &rows, "list hit");
    assert_eq!(live.get_value(&ID.to_string()).await.unwrap(), row);
    assert_eq!(live.get_count().await.unwrap(), count);

    // Cold slots report the master's own failure.
    assert!(live.get_value(&OTHER_ID.to_string()).await.is_err());
    let mut page = live.clone();
    page.set_pagination(Some(Pagination::new(1, 5)));
    assert!(page.list_values().await.is_err());
    assert!(
        live.get_some_value().await.is_err(),
        "get_some is never cached"
    );
}

#[tokio::test]
async fn get_value_fills_a_per_id_slot() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let cache = Arc::new(MemCache::new());
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", cache.clone());

        let id_key = live.id_cache_key(ID);
        let keys = [
            id_key.clone(),
            live.id_cache_key(OTHER_ID),
            live.page_cache_key(None),
            live.page_cache_key(Pagination::new(1, 10)),
            live.count_cache_key(),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "{what}: slot keys must differ");
            }
        }

        let expected = master.table.get_value(&ID.to_string()).await.unwrap();
        let expected = expected.expect("seeded row");
        let got = live.get_value(&ID.to_string()).await.unwrap();
        assert_eq!(got.as_ref(), Some(&expected), "{what}: miss");
        let slot = cache.get(&id_key).await.unwrap().expect("id slot filled");
        assert_eq!(slot.rows.len(), 1, "{what}: one row per id slot");
        assert_eq!(slot.rows.values().next(), Some(&expected), "{what}");
        // Only the id slot was filled.
        for key in &keys[1..] {
            assert!(cache.get(key).await.unwrap().is_none(), "{what}: {key}");
        }

        probe.set_down(true);
        assert_eq!(
            live.get_value(&ID.to_string()).await.unwrap().as_ref(),
            Some(&expected),
            "{what}: hit with the master down"
        );
        let err = live.get_value(&OTHER_ID.to_string()).await.unwrap_err();
        assert!(err.to_string().contains(DOWN), "{what}: {err}");
        // The id slot does not answer for the list.
        assert!(live.list_values().await.is_err(), "{what}: list is cold");
        assert_eq!(probe.reads(), 3, "{what}: one fill, two cold reads");
    }
}

#[tokio::test]
async fn a_missing_id_is_cached_as_absent_until_a_change_drops_it() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let cache = Arc::new(MemCache::new());
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", cache.clone());
        let id = "p13_new_bun".to_string();

        assert_eq!(live.get_value(&id).await.unwrap(), None, "{what}");
        assert_eq!(live.get_value(&id).await.unwrap(), None, "{what}");
        assert_eq!(live.get_shared(&id).await.unwrap(), None, "{what}");
        assert_eq!(probe.reads(), 1, "{what}: the absence is a hit");
        // The seed's view of the slot: an absent row is no rows at all.
        assert!(
            cache.get(&live.id_cache_key(&id)).await.unwrap().is_none(),
            "{what}: an absent row has no seed-shaped slot"
        );

        // The row appears through the LiveTable: the absence is dropped.
        let record = extra_product("New Bun");
        live.insert_value(&id, &record).await.unwrap();
        let got = live.get_value(&id).await.unwrap();
        assert_eq!(
            got,
            master.table.get_value(&id).await.unwrap(),
            "{what}: visible at once"
        );
        assert!(got.is_some(), "{what}");
        assert!(cache.get(&live.id_cache_key(&id)).await.unwrap().is_some());
        live.delete(&id).await.unwrap();
        assert_eq!(live.get_value(&id).await.unwrap(), None, "{what}");
    }
}

#[tokio::test]
async fn count_is_cached() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let cache = Arc::new(MemCache::new());
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", cache.clone());
        let seeded = common::seed_len("product") as i64;

        assert!(cache.get(&live.count_cache_key()).await.unwrap().is_none());
        assert_eq!(live.get_count().await.unwrap(), seeded, "{what}");
        assert_eq!(master.table.get_count().await.unwrap(), seeded, "{what}");
        assert!(
            cache.get(&live.count_cache_key()).await.unwrap().is_some(),
            "{what}: count slot filled"
        );
        assert_eq!(live.get_count().await.unwrap(), seeded, "{what}");
        assert_eq!(probe.reads(), 1, "{what}: the second count is a hit");

        // A row added behind the cache's back is not counted until the
        // cache_key is dropped.
        master
            .table
            .insert_value(&"p13_new_bun".to_string(), &extra_product("New Bun"))
            .await
            .unwrap();
        probe.set_down(true);
        assert_eq!(live.get_count().await.unwrap(), seeded, "{what}: hit");
        probe.set_down(false);
        cache
            .invalidate_prefix(SlotKeys::new("products").prefix())
            .await
            .unwrap();
        assert_eq!(live.get_count().await.unwrap(), seeded + 1, "{what}");
    }
}

#[tokio::test]
async fn master_reads_are_counted() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", Arc::new(MemCache::new()));

        live.list_values().await.unwrap();
        assert_eq!(probe.reads(), 1, "{what}: first list reads the master once");
        live.list_values().await.unwrap();
        assert_eq!(probe.reads(), 1, "{what}: second list reads nothing");

        live.get_value(&ID.to_string()).await.unwrap();
        live.get_value(&ID.to_string()).await.unwrap();
        assert_eq!(probe.reads(), 2, "{what}: one read per id");

        live.get_count().await.unwrap();
        live.get_count().await.unwrap();
        assert_eq!(probe.reads(), 3, "{what}: one read per count");

        // A clone shares the cache.
        live.clone().list_values().await.unwrap();
        assert_eq!(probe.reads(), 3, "{what}: a clone hits too");

        // Another LiveTable on the same cache and cache_key shares the slots.
        let twin = common::live(live.master().clone(), "products", live.cache().clone());
        twin.list_values().await.unwrap();
        assert_eq!(probe.reads(), 3, "{what}: same cache_key, same slots");
        // A different cache_key on the same cache does not.
        let other = common::live(live.master().clone(), "products-2", live.cache().clone());
        other.list_values().await.unwrap();
        assert_eq!(probe.reads(), 4, "{what}: another cache_key misses");
    }
}

#[tokio::test]
async fn get_some_value_passes_through() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let cache = Arc::new(MemCache::new());
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", cache.clone());

        let expected = master.table.get_some_value().await.unwrap();
        assert!(expected.is_some(), "{what}");
        for n in 1..=3 {
            assert_eq!(live.get_some_value().await.unwrap(), expected, "{what}");
            assert_eq!(probe.reads(), n, "{what}: every call reads the master");
        }
        for key in [
            live.page_cache_key(None),
            live.count_cache_key(),
            live.id_cache_key(&expected.as_ref().unwrap().0),
        ] {
            assert!(cache.get(&key).await.unwrap().is_none(), "{what}: {key}");
        }
        // Even with the list cached, get_some goes to the master.
        live.list_values().await.unwrap();
        probe.set_down(true);
        let err = live.get_some_value().await.unwrap_err();
        assert!(err.to_string().contains(DOWN), "{what}: {err}");
    }
}

#[tokio::test]
async fn no_cache_parity() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", Arc::new(NoCache));
        let mut paged = live.clone();
        paged.set_pagination(Some(Pagination::new(2, 5)));

        let mut expected_reads = 0;
        for round in 0..3 {
            if round == 2 {
                // A row added on the master shows up at once.
                master
                    .table
                    .insert_value(&"p13_new_bun".to_string(), &extra_product("New Bun"))
                    .await
                    .unwrap();
            }
            let ctx = format!("{what} round {round}");
            assert_rows(
                &live.list_values().await.unwrap(),
                &master_rows(&master.table, None).await,
                &ctx,
            );
            assert_rows(
                &paged.list_values().await.unwrap(),
                &master_rows(&master.table, Some(Pagination::new(2, 5))).await,
                &ctx,
            );
            for id in [ID, "p13_new_bun", "nope"] {
                assert_eq!(
                    live.get_value(&id.to_string()).await.unwrap(),
                    master.table.get_value(&id.to_string()).await.unwrap(),
                    "{ctx}: {id}"
                );
            }
            assert_eq!(
                live.get_count().await.unwrap(),
                master.table.get_count().await.unwrap(),
                "{ctx}"
            );
            assert_eq!(
                live.get_some_value().await.unwrap(),
                master.table.get_some_value().await.unwrap(),
                "{ctx}"
            );
            expected_reads += 7;
            assert_eq!(probe.reads(), expected_reads, "{ctx}: every read");
        }
    }
}

#[tokio::test]
async fn add_condition_eq_rejected_by_the_master_leaves_the_view_unchanged() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let mut live = common::live(wrapped, "products", Arc::new(MemCache::new()));
        let rows = live.list_values().await.unwrap();
        let keys_before = (
            live.page_cache_key(None),
            live.id_cache_key(ID),
            live.count_cache_key(),
        );

        let backend_err = master
            .table
            .clone()
            .add_condition_eq("name", "Brioche")
            .expect_err("0.4 backends have no eq_condition");
        let err = live.add_condition_eq("name", "Brioche").unwrap_err();
        assert_eq!(
            err.to_string(),
            backend_err.to_string(),
            "{what}: the backend's own error"
        );

        let keys_after = (
            live.page_cache_key(None),
            live.id_cache_key(ID),
            live.count_cache_key(),
        );
        assert_eq!(keys_after, keys_before, "{what}: same slots");
        assert!(live.is_cacheable(), "{what}");
        assert_rows(&live.list_values().await.unwrap(), &rows, what);
        assert_eq!(probe.reads(), 1, "{what}: still served from the cache");
    }
}

#[tokio::test]
async fn opaque_condition_rejected_by_the_master_leaves_the_live_table_cacheable() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let mut live = common::live(wrapped, "products", Arc::new(MemCache::new()));
        live.list_values().await.unwrap();
        let key = live.page_cache_key(None);

        let err = live.add_condition(Box::new(())).unwrap_err();
        let backend_err = master
            .table
            .clone()
            .add_condition(Box::new(()))
            .unwrap_err();
        assert_eq!(err.to_string(), backend_err.to_string(), "{what}");
        assert!(
            live.is_cacheable(),
            "{what}: a rejected condition is not set"
        );
        assert_eq!(live.page_cache_key(None), key, "{what}");
        live.list_values().await.unwrap();
        assert_eq!(probe.reads(), 1, "{what}: still served from the cache");
    }
}

#[tokio::test]
async fn master_changed_behind_the_back_shows_only_after_invalidation() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        for tc in common::storing_caches() {
            let what = format!("{} over {}", tc.name, master.kind);
            let master_table = master.table.clone();
            // Each round uses its own rows on the shared master.
            let id = format!("p13_{}", tc.name);
            let live = common::live(master_table.clone(), "products", tc.cache.clone());
            let before = live.list_values().await.unwrap();
            let row_before = live.get_value(&ID.to_string()).await.unwrap();

            master_table
                .insert_value(&id, &extra_product("Behind the back"))
                .await
                .unwrap();
            let mut patch = vantage_types::Record::new();
            patch.insert(
                "name".to_string(),
                ciborium::Value::Text("Renamed".to_string()),
            );
            master_table
                .patch_value(&ID.to_string(), &patch)
                .await
                .unwrap();

            let hit = live.list_values().await.unwrap();
            assert_rows(&hit, &before, &format!("{what}: a hit shows the old rows"));
            assert!(!hit.contains_key(&id), "{what}");
            assert_eq!(
                live.get_value(&ID.to_string()).await.unwrap(),
                row_before,
                "{what}: the id hit shows the old row"
            );

            tc.cache
                .invalidate_prefix(SlotKeys::new("products").prefix())
                .await
                .unwrap();
            let fresh = live.list_values().await.unwrap();
            assert_rows(
                &fresh,
                &master_rows(&master_table, None).await,
                &format!("{what}: after invalidation"),
            );
            assert!(fresh.contains_key(&id), "{what}");
            assert_eq!(
                fresh[ID]["name"],
                ciborium::Value::Text("Renamed".to_string()),
                "{what}"
            );
            assert_eq!(
                live.get_value(&ID.to_string()).await.unwrap(),
                master_table.get_value(&ID.to_string()).await.unwrap(),
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_shaped_or_undecodable_slots_are_misses() {
    // The cache is disposable: whatever a slot holds, a read answers with the
    // master's rows, never with the slot's junk, and repairs the slot.
    common::init_tracing();
    let master = common::redb_master("product").await;
    let seeded = common::seed_len("product") as i64;

    // Wrong shapes cannot be planted through the seed's `put`: a count that
    // is text, an id slot with no row at all.
    let cache = Arc::new(MemCache::new());
    let live = common::live(master.table.clone(), "products", cache.clone());
    let junk = |field: &str, value: ciborium::Value| {
        let mut record = vantage_types::Record::new();
        record.insert(field.to_string(), value);
        let mut rows = common::Rows::new();
        rows.insert("count".to_string(), record);
        vantage_live::CachedRows::new(rows)
    };
    let refused = cache
        .put(
            &live.count_cache_key(),
            junk("count", ciborium::Value::Text("12".into())),
        )
        .await
        .expect_err("a count slot holds an integer");
    assert!(refused.to_string().contains("shape"), "{refused}");
    let refused = cache
        .put(
            &live.id_cache_key(ID),
            vantage_live::CachedRows::new(common::Rows::new()),
        )
        .await
        .expect_err("an id slot holds one row");
    assert!(
        refused.to_string().contains(ID),
        "names the slot: {refused}"
    );
    assert_eq!(live.get_count().await.unwrap(), seeded);

    // Undecodable bytes in a RedbCache slot, planted with redb itself.
    let dir = tempfile::tempdir().unwrap();
    let key =
        common::live(master.table.clone(), "products", Arc::new(NoCache)).page_cache_key(None);
    {
        let (namespace, slot) = vantage_live_layers::cache::split_key(&key);
        let db = redb::Database::create(dir.path().join("vlive.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let name = format!("__vlive__{namespace}");
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new(&name);
            txn.open_table(def)
                .unwrap()
                .insert(slot, &b"\xff\xffnot cbor"[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let cache: Arc<dyn Cache> = Arc::new(vantage_live::RedbCache::open(dir.path()).unwrap());
    assert!(cache.get(&key).await.is_err(), "the slot really is junk");
    let live = common::live(master.table.clone(), "products", cache.clone());
    assert_rows(
        &live.list_values().await.unwrap(),
        &master_rows(&master.table, None).await,
        "undecodable slot",
    );
    let repaired = cache.get(&key).await.expect("slot repaired by the fill");
    assert!(repaired.is_some());
}

#[tokio::test]
async fn awkward_ids_get_their_own_slots() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let what = master.kind;
        let ids = ["a/b", "a%2Fb", "a b", "ü-ñ 🥐", "x=1&y=2", "%"];
        for (i, id) in ids.iter().enumerate() {
            master
                .table
                .insert_value(&id.to_string(), &extra_product(&format!("awkward {i}")))
                .await
                .unwrap();
        }
        let cache = Arc::new(MemCache::new());
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let live = common::live(wrapped, "products", cache.clone());
        let keys: Vec<String> = ids.iter().map(|id| live.id_cache_key(id)).collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "{what}");
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let row = live.get_value(&id.to_string()).await.unwrap();
            let name = row.expect("inserted")["name"].clone();
            assert_eq!(
                name,
                ciborium::Value::Text(format!("awkward {i}")),
                "{what}: {id}"
            );
        }
        probe.set_down(true);
        for (i, id) in ids.iter().enumerate() {
            let row = live.get_value(&id.to_string()).await.unwrap();
            assert_eq!(
                row.expect("hit")["name"],
                ciborium::Value::Text(format!("awkward {i}")),
                "{what}: hit {id}"
            );
        }
        assert_eq!(probe.reads(), ids.len(), "{what}");
    }
}

#[tokio::test]
async fn any_cache_key_text_works_and_stays_isolated() {
    common::init_tracing();
    let master = common::redb_master("product").await;
    let cache_keys = [
        String::new(),
        "a".to_string(),
        "a/b".to_string(),
        "shop".to_string(),
        "shopping".to_string(),
        "ünï cødé / 🥐".to_string(),
        "k".repeat(1024),
    ];
    for tc in common::storing_caches() {
        let (wrapped, probe) = Instrumented::wrap(master.table.clone());
        let lives: Vec<LiveTable> = cache_keys
            .iter()
            .map(|k| common::live(wrapped.clone(), k.clone(), tc.cache.clone()))
            .collect();
        for live in &lives {
            live.list_values().await.unwrap();
        }
        assert_eq!(probe.reads(), lives.len(), "{}: one fill each", tc.name);
        for live in &lives {
            live.list_values().await.unwrap();
        }
        assert_eq!(probe.reads(), lives.len(), "{}: all hits", tc.name);

        // Dropping one cache_key leaves the others, prefixes of it included.
        for (i, live) in lives.iter().enumerate() {
            tc.cache
                .invalidate_prefix(SlotKeys::new(live.cache_key()).prefix())
                .await
                .unwrap();
            let before = probe.reads();
            for other in &lives {
                other.list_values().await.unwrap();
            }
            assert_eq!(
                probe.reads(),
                before + 1,
                "{}: dropping {:?} (#{i}) refetched only itself",
                tc.name,
                live.cache_key().chars().take(20).collect::<String>()
            );
        }
    }
}

/// A backend that stores nothing (`Cache::stores` is `false`) is never handed
/// rows: reads through the stack skip the fill instead of copying the rows
/// only for the backend to drop them.
#[tokio::test]
async fn a_backend_that_stores_nothing_is_never_filled() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Forgetful {
        puts: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Cache for Forgetful {
        async fn get(&self, _key: &str) -> vantage_core::Result<Option<vantage_live::CachedRows>> {
            Ok(None)
        }
        async fn put(
            &self,
            _key: &str,
            _rows: vantage_live::CachedRows,
        ) -> vantage_core::Result<()> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn invalidate_prefix(&self, _prefix: &str) -> vantage_core::Result<()> {
            Ok(())
        }
        fn stores(&self) -> bool {
            false
        }
    }

    let master = common::redb_master("product").await;
    let cache = Arc::new(Forgetful::default());
    let live = common::live(master.table.clone(), "products", cache.clone());
    assert_rows(
        &live.list_values().await.unwrap(),
        &master_rows(&master.table, None).await,
        "list",
    );
    live.get_value(&ID.to_string()).await.unwrap().expect("row");
    live.get_count().await.unwrap();
    assert_eq!(cache.puts.load(Ordering::SeqCst), 0, "no fill was offered");
}

/// Single flight holds even when a read misses before another read's fill
/// and looks for a flight only after that flight has ended (a backend that
/// answers from another thread, such as `RedbCache`, opens this window): the
/// late read serves the fill instead of reading the master again.
#[tokio::test]
async fn a_read_that_missed_before_a_fill_serves_it_instead_of_rereading() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{Notify, Semaphore};

    /// A MemCache whose first lookup, once it missed, waits for a permit.
    struct Gated {
        inner: MemCache,
        calls: AtomicUsize,
        entered: Notify,
        gate: Semaphore,
    }

    #[async_trait::async_trait]
    impl Cache for Gated {
        async fn get(&self, key: &str) -> vantage_core::Result<Option<vantage_live::CachedRows>> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, rows: vantage_live::CachedRows) -> vantage_core::Result<()> {
            self.inner.put(key, rows).await
        }
        async fn invalidate_prefix(&self, prefix: &str) -> vantage_core::Result<()> {
            self.inner.invalidate_prefix(prefix).await
        }
        fn generations(&self) -> Option<&vantage_live::cache::Generations> {
            self.inner.generations()
        }
        fn peek(
            &self,
            _: &str,
            _: &Arc<vantage_live::cache::Namespace>,
        ) -> vantage_live::cache::Peek {
            vantage_live::cache::Peek::Unknown
        }
        async fn lookup(
            &self,
            key: &str,
            namespace: &Arc<vantage_live::cache::Namespace>,
            ticket: &mut vantage_live::cache::Ticket,
        ) -> vantage_core::Result<Option<vantage_live::CachedSlot>> {
            let found = self.inner.lookup(key, namespace, ticket).await;
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                self.entered.notify_one();
                self.gate.acquire().await.unwrap().forget();
            }
            found
        }
        async fn fill(
            &self,
            key: &str,
            namespace: &Arc<vantage_live::cache::Namespace>,
            ticket: vantage_live::cache::Ticket,
            slot: vantage_live::CachedSlot,
        ) -> vantage_core::Result<bool> {
            self.inner.fill(key, namespace, ticket, slot).await
        }
    }

    let master = common::redb_master("product").await;
    let (wrapped, probe) = Instrumented::wrap(master.table.clone());
    let cache = Arc::new(Gated {
        inner: MemCache::new(),
        calls: AtomicUsize::new(0),
        entered: Notify::new(),
        gate: Semaphore::new(0),
    });
    let live = common::live(wrapped, "products", cache.clone());

    // B misses, then stalls before looking for a flight.
    let late = tokio::spawn({
        let live = live.clone();
        async move { live.list_values().await.unwrap() }
    });
    cache.entered.notified().await;
    // A misses too, reads the master, fills the slot, and its flight ends.
    let first = live.list_values().await.unwrap();
    assert_eq!(probe.reads(), 1);
    // B goes on: no flight to join, but the slot is filled.
    cache.gate.add_permits(1);
    let second = late.await.unwrap();
    assert_rows(&second, &first, "the late read");
    assert_eq!(probe.reads(), 1, "the late read went to the master again");
}

/// The same tests, over a stack with tower middleware between the cache and
/// the master (see `tests/common/stacks.rs`).
#[test]
fn the_suite_passes_over_a_custom_stack() {
    common::stacks::rerun_over_custom_stack("the_suite_passes_over_a_custom_stack");
}
