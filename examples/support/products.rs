//! The master the small examples share: the bakery's product table in a
//! SQLite file, created and seeded with the bakery products if empty.
//!
//! Included with `#[path = "support/products.rs"] mod products;` beside the
//! `bakery` module (`tests/common/bakery.rs`).

use vantage_dataset::prelude::WritableValueSet;
use vantage_sql::condition::SqliteCondition;
use vantage_sql::primitives::identifier::ident;
use vantage_sql::sqlite::SqliteDB;
use vantage_table::any::AnyTable;
use vantage_table::sorting::OrderBy;
use vantage_table::table::Table;
use vantage_table::traits::table_like::TableLike;
use vantage_types::EmptyEntity;

use super::bakery;

/// The product table in the SQLite file `file` (created, with its folder,
/// if missing), ordered by id and seeded if it holds no rows.
pub async fn sqlite_products(
    file: &std::path::Path,
) -> Result<AnyTable, Box<dyn std::error::Error>> {
    let model = bakery::Model::load();
    let product = model.entity("product");
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let db = SqliteDB::connect(&format!("sqlite://{}?mode=rwc", file.display())).await?;
    sqlx::query(&product.create_table_sql(false, true))
        .execute(db.pool())
        .await?;
    let table = bakery::with_columns(
        Table::<SqliteDB, EmptyEntity>::new(product.table.clone(), db),
        product,
    )
    .with_order(OrderBy::ascending(SqliteCondition::from(ident("id"))));
    let master = AnyTable::from_table(table);
    if master.get_count().await? == 0 {
        for (id, record) in product.seed() {
            master.insert_value(&id, &record).await?;
        }
    }
    Ok(master)
}
