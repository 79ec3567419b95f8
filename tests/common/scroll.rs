//! Scrolling: a master grown to a number of rows, and a LiveTable read page
//! by page, each page checked against what the master itself answers.

use vantage_dataset::prelude::{ReadableValueSet, WritableValueSet};
use vantage_live::LiveTable;
use vantage_table::any::AnyTable;
use vantage_table::pagination::Pagination;
use vantage_table::traits::table_like::TableLike;

use super::{assert_rows, extra_product, master_rows, seed_len, Rows};

/// Insert extra products (ids `q000`, `q001`, ... after the seed's, in id
/// order) until the product master holds `total` rows.
pub async fn grow_products(master: &AnyTable, total: usize) {
    for i in seed_len("product")..total {
        master
            .insert_value(&format!("q{i:03}"), &extra_product(&format!("extra {i}")))
            .await
            .unwrap_or_else(|e| panic!("growing the master to {total} rows: {e}"));
    }
}

/// Page `page` at `ipp` rows through `live` (on a clone: `live` keeps its
/// own pagination), checked against the master's own answer.
pub async fn page(live: &LiveTable, master: &AnyTable, page: i64, ipp: i64, what: &str) -> Rows {
    let pagination = Some(Pagination::new(page, ipp));
    let mut ui = live.clone();
    ui.set_pagination(pagination);
    let rows = ui
        .list_values()
        .await
        .unwrap_or_else(|e| panic!("{what}: page {page} x {ipp}: {e}"));
    assert_rows(
        &rows,
        &master_rows(master, pagination).await,
        &format!("{what}: page {page} x {ipp}"),
    );
    rows
}

/// Pages `pages` at `ipp` rows through `live`, each checked against the
/// master.
pub async fn scroll(
    live: &LiveTable,
    master: &AnyTable,
    pages: impl IntoIterator<Item = i64>,
    ipp: i64,
    what: &str,
) {
    for p in pages {
        page(live, master, p, ipp, what).await;
    }
}
