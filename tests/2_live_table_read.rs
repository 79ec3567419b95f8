//! Read path: miss, fill, hit, over real masters.

mod common;

use std::sync::Arc;

use vantage_dataset::prelude::ReadableValueSet;
use vantage_live::{Cache, LiveTable, MemCache};

#[tokio::test]
async fn miss_then_fill_then_hit() {
    common::init_tracing();
    for master in common::all_masters("product").await {
        let cache = Arc::new(MemCache::new());
        let live = LiveTable::new(master.table.clone(), "products", cache.clone());
        let key = live.page_cache_key(None);
        assert!(
            cache.get(&key).await.unwrap().is_none(),
            "{}: cold",
            master.kind
        );
        let first = live.list_values().await.unwrap();
        let direct = master.table.list_values().await.unwrap();
        assert_eq!(
            first, direct,
            "{}: miss returns the master's rows",
            master.kind
        );
        let cached = cache.get(&key).await.unwrap().expect("filled");
        assert_eq!(cached.rows, direct, "{}", master.kind);
        let second = live.list_values().await.unwrap();
        assert_eq!(second, direct, "{}", master.kind);
    }
}
