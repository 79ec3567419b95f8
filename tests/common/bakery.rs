//! The bakery model (`examples/bakery/bakery.yaml`): entities, columns and
//! seed rows, as Rust values.

use std::path::PathBuf;

use ciborium::Value;
use indexmap::IndexMap;
use serde::Deserialize;
use vantage_table::table::Table;
use vantage_table::traits::table_source::TableSource;
use vantage_types::{EmptyEntity, Record};

/// Where the model lives in the repo.
pub fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/bakery/bakery.yaml")
}

/// The whole model file.
#[derive(Debug, Deserialize)]
pub struct Model {
    /// Entities by name.
    pub entities: IndexMap<String, Entity>,
}

/// One entity: a table, its columns, references and seed rows.
#[derive(Debug, Clone, Deserialize)]
pub struct Entity {
    /// The table name in the database.
    pub table: String,
    /// The id column.
    pub id: String,
    /// Title columns, shown first.
    #[serde(default)]
    pub title: Vec<String>,
    /// Columns (besides the id) and their types.
    pub columns: IndexMap<String, ColumnType>,
    /// Relations to other entities.
    #[serde(default)]
    pub references: IndexMap<String, Reference>,
    /// Seed rows; each has the id column and every column.
    #[serde(default)]
    pub rows: Vec<IndexMap<String, serde_yaml_ng::Value>>,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Text.
    String,
    /// 64-bit integer.
    Int,
    /// 64-bit float.
    Float,
    /// Boolean.
    Bool,
}

/// A relation to another entity.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// This row points at one row of `one` through `key`.
    pub one: Option<String>,
    /// Rows of `many` point at this row through `key`.
    pub many: Option<String>,
    /// The foreign-key column.
    pub key: String,
}

impl Model {
    /// Load the model shipped in the repo.
    pub fn load() -> Model {
        let text = std::fs::read_to_string(model_path()).expect("read bakery.yaml");
        serde_yaml_ng::from_str(&text).expect("parse bakery.yaml")
    }

    /// One entity by name.
    pub fn entity(&self, name: &str) -> &Entity {
        &self.entities[name]
    }
}

impl ColumnType {
    /// Convert a YAML value to this type's CBOR value.
    pub fn to_cbor(self, value: &serde_yaml_ng::Value) -> Value {
        use serde_yaml_ng::Value as Y;
        match (self, value) {
            (_, Y::Null) => Value::Null,
            (ColumnType::String, Y::String(s)) => Value::Text(s.clone()),
            (ColumnType::String, other) => {
                Value::Text(serde_yaml_ng::to_string(other).unwrap().trim().to_string())
            }
            (ColumnType::Int, Y::Number(n)) => Value::Integer(n.as_i64().unwrap().into()),
            (ColumnType::Float, Y::Number(n)) => Value::Float(n.as_f64().unwrap()),
            (ColumnType::Bool, Y::Bool(b)) => Value::Bool(*b),
            (t, v) => panic!("seed value {v:?} does not fit column type {t:?}"),
        }
    }

    /// The SQL column type.
    pub fn sql(self, postgres: bool) -> &'static str {
        match (self, postgres) {
            (ColumnType::String, _) => "TEXT",
            (ColumnType::Int, false) => "INTEGER",
            (ColumnType::Int, true) => "BIGINT",
            (ColumnType::Float, false) => "REAL",
            (ColumnType::Float, true) => "DOUBLE PRECISION",
            (ColumnType::Bool, _) => "BOOLEAN",
        }
    }
}

impl Entity {
    /// `CREATE TABLE` for this entity (`IF NOT EXISTS` when asked), in the
    /// SQLite or PostgreSQL dialect.
    pub fn create_table_sql(&self, postgres: bool, if_not_exists: bool) -> String {
        let mut columns = vec![format!("\"{}\" TEXT PRIMARY KEY", self.id)];
        for (name, ty) in &self.columns {
            columns.push(format!("\"{name}\" {}", ty.sql(postgres)));
        }
        let guard = if if_not_exists { "IF NOT EXISTS " } else { "" };
        format!(
            "CREATE TABLE {guard}\"{}\" ({})",
            self.table,
            columns.join(", ")
        )
    }

    /// The seed rows as records keyed by id (the id is not inside the record).
    pub fn seed(&self) -> IndexMap<String, Record<Value>> {
        self.rows
            .iter()
            .map(|row| {
                let id = row[self.id.as_str()]
                    .as_str()
                    .expect("id is text")
                    .to_string();
                let record = self
                    .columns
                    .iter()
                    .map(|(name, ty)| (name.clone(), ty.to_cbor(&row[name.as_str()])))
                    .collect();
                (id, record)
            })
            .collect()
    }
}

/// Declare `entity`'s id and columns, with their Rust types, on a table of
/// any backend.
pub fn with_columns<T>(mut table: Table<T, EmptyEntity>, entity: &Entity) -> Table<T, EmptyEntity>
where
    T: TableSource,
    T::Id: std::fmt::Debug,
{
    table = table.with_id_column(entity.id.clone());
    for (name, ty) in &entity.columns {
        table = match ty {
            ColumnType::String => table.with_column_of::<String>(name.clone()),
            ColumnType::Int => table.with_column_of::<i64>(name.clone()),
            ColumnType::Float => table.with_column_of::<f64>(name.clone()),
            ColumnType::Bool => table.with_column_of::<bool>(name.clone()),
        };
    }
    table
}
