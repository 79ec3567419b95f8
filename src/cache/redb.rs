//! [`RedbCache`]: a disk cache in one redb file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition, TableError, TableHandle,
};
use vantage_core::{error, Result, VantageError};
use vantage_live_layers::cache::split_key;
use vantage_live_layers::{Cache, CachedRows};

use super::mem::{MemCache, DEFAULT_MAX_WEIGHT};

/// The default weight of a [`RedbCache`]'s memory front: 64 MiB.
pub const DEFAULT_FRONT_WEIGHT: u64 = DEFAULT_MAX_WEIGHT;

/// The file a [`RedbCache`] keeps inside its folder.
pub const FILE_NAME: &str = "vlive.redb";

/// Table names start with this; the rest is the namespace (escaped cache_key).
const TABLE_PREFIX: &str = "__vlive__";

/// Namespace → generation, bumped by every invalidation that touches it.
const GENERATIONS: TableDefinition<&str, u64> = TableDefinition::new("__vlive_generations");

fn slots_table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// A [`Cache`] on disk: one redb file, `vlive.redb`, inside a folder, with one
/// redb table per cache_key (`__vlive__<namespace>`) and CBOR-encoded
/// [`CachedRows`] as values.
///
/// - **Survives restarts.** Slots written by one process are served to the
///   next one that opens the folder.
/// - **Durability chosen for a cache.** Fills commit with
///   [`Durability::None`]: a crash may lose recent fills, which only costs
///   misses. Invalidations that drop slots commit with
///   [`Durability::Immediate`] (which also makes every earlier fill
///   durable): after a crash, a slot dropped by an acknowledged write never
///   comes back. An invalidation that finds nothing of its cache_key stored
///   (writes in a row, with no read between them) only moves the
///   generation, and commits without a sync: a crash has nothing to bring
///   back, since every commit that ever dropped that cache_key's slots was
///   itself durable, and generations only fence fills within one process.
/// - **Invalidation drops a table.** Invalidating a whole cache_key deletes
///   its redb table and bumps its generation in one transaction.
/// - **Never blocks the runtime.** Every redb call runs on tokio's blocking
///   pool (`spawn_blocking`), so use it inside a tokio runtime.
/// - **One process per folder.** redb locks the file; a second open, from this
///   process or another, fails with [`OpenCacheError::AlreadyOpen`].
///
/// # Resetting a broken cache
///
/// The cache is disposable and the master is never touched through it. If
/// [`RedbCache::open`] reports the file corrupt or unreadable, stop the
/// processes using the folder and delete `vlive.redb` (or the whole folder),
/// or call [`RedbCache::reset`]; the next open starts empty.
#[derive(Clone)]
pub struct RedbCache {
    inner: Arc<Inner>,
    /// Decoded slots kept in memory in front of the file (see
    /// [`RedbCache::with_memory_front`]).
    front: Option<MemCache>,
}

struct Inner {
    db: Database,
    folder: PathBuf,
}

/// Why [`RedbCache::open`] failed. Every variant names the folder.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenCacheError {
    /// The folder could not be created or is not a folder.
    Folder {
        /// The cache folder.
        folder: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another `RedbCache` (in this process or another) has the folder open.
    AlreadyOpen {
        /// The cache folder.
        folder: PathBuf,
    },
    /// `vlive.redb` exists but is not a readable redb file (damaged, or some
    /// other file): reset the cache.
    Corrupt {
        /// The cache folder.
        folder: PathBuf,
        /// What redb reported.
        details: String,
    },
    /// `vlive.redb` could not be read or written.
    Io {
        /// The cache folder.
        folder: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

impl OpenCacheError {
    /// The cache folder the error is about.
    pub fn folder(&self) -> &Path {
        match self {
            OpenCacheError::Folder { folder, .. }
            | OpenCacheError::AlreadyOpen { folder }
            | OpenCacheError::Corrupt { folder, .. }
            | OpenCacheError::Io { folder, .. } => folder,
        }
    }
}

impl fmt::Display for OpenCacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenCacheError::Folder { folder, source } => write!(
                f,
                "cannot use {} as a cache folder: {source}",
                folder.display()
            ),
            OpenCacheError::AlreadyOpen { folder } => write!(
                f,
                "the cache in {} is already open (one process, one RedbCache per folder)",
                folder.display()
            ),
            OpenCacheError::Corrupt { folder, details } => write!(
                f,
                "the cache file {} is corrupt or not a redb file ({details}); \
                 it is disposable: delete it to reset the cache",
                folder.join(FILE_NAME).display()
            ),
            OpenCacheError::Io { folder, source } => write!(
                f,
                "cannot read or write the cache file {}: {source}; \
                 the cache is disposable: delete it to reset the cache",
                folder.join(FILE_NAME).display()
            ),
        }
    }
}

impl std::error::Error for OpenCacheError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenCacheError::Folder { source, .. } | OpenCacheError::Io { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl From<OpenCacheError> for VantageError {
    fn from(e: OpenCacheError) -> Self {
        VantageError::other(e.to_string())
    }
}

impl RedbCache {
    /// Open (or create) the cache in `folder`, creating the folder if needed.
    ///
    /// This call does blocking file I/O (and, after an unclean shutdown,
    /// redb's repair); from async code, call it once at start-up or inside
    /// `spawn_blocking`.
    pub fn open(folder: impl AsRef<Path>) -> std::result::Result<Self, OpenCacheError> {
        let folder = folder.as_ref().to_path_buf();
        if let Err(source) = std::fs::create_dir_all(&folder) {
            return Err(OpenCacheError::Folder { folder, source });
        }
        let db = match Database::create(folder.join(FILE_NAME)) {
            Ok(db) => db,
            Err(e) => return Err(open_error(folder, e)),
        };
        Ok(Self {
            inner: Arc::new(Inner { db, folder }),
            front: Some(MemCache::builder().max_weight(DEFAULT_FRONT_WEIGHT).build()),
        })
    }

    /// Keep up to `max_weight` bytes of decoded slots in memory in front of
    /// the file (default [`DEFAULT_FRONT_WEIGHT`], 64 MiB; `0` turns the
    /// front off).
    ///
    /// A hit in the front costs what a [`MemCache`] hit costs; a slot only
    /// on disk is read on the blocking pool, decoded, and kept in the front
    /// for the next hit. The front is coherent because one process owns the
    /// folder: every store and invalidation goes through this `RedbCache`,
    /// the file first and the front second, and the front is fenced by its
    /// own generations exactly as fills are, so it never holds a slot the
    /// file has dropped. The front is empty after a restart; the file is
    /// what survives.
    pub fn with_memory_front(mut self, max_weight: u64) -> Self {
        self.front = (max_weight > 0).then(|| MemCache::builder().max_weight(max_weight).build());
        self
    }

    /// Delete `folder`'s cache file so the next [`RedbCache::open`] starts
    /// empty. The folder must not be open. Nothing but `vlive.redb` is
    /// touched; a missing file is not an error.
    pub fn reset(folder: impl AsRef<Path>) -> std::io::Result<()> {
        match std::fs::remove_file(folder.as_ref().join(FILE_NAME)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// The folder this cache lives in.
    pub fn folder(&self) -> &Path {
        &self.inner.folder
    }

    /// Run `work` on the blocking pool with the database.
    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| error!("redb cache task failed", details = e))?
    }
}

fn open_error(folder: PathBuf, e: DatabaseError) -> OpenCacheError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => OpenCacheError::AlreadyOpen { folder },
        DatabaseError::Storage(StorageError::Io(source)) => {
            // A file too short or with garbage where redb's header goes reads
            // as an I/O error; redb's own header check reports Corrupted.
            if matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) {
                OpenCacheError::Corrupt {
                    folder,
                    details: source.to_string(),
                }
            } else {
                OpenCacheError::Io { folder, source }
            }
        }
        other => OpenCacheError::Corrupt {
            folder,
            details: other.to_string(),
        },
    }
}

impl fmt::Debug for RedbCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbCache")
            .field("folder", &self.inner.folder)
            .finish()
    }
}

fn table_name(namespace: &str) -> String {
    format!("{TABLE_PREFIX}{namespace}")
}

/// Wraps a redb error with what was being done.
fn redb_error(what: &'static str, e: impl fmt::Display) -> VantageError {
    error!(what, details = e.to_string())
}

impl Inner {
    fn get(&self, namespace: &str, slot: &str) -> Result<Option<CachedRows>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| redb_error("redb cache: cannot begin read", e))?;
        let name = table_name(namespace);
        let table = match txn.open_table(slots_table(&name)) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(redb_error("redb cache: cannot open table", e)),
        };
        let Some(bytes) = table
            .get(slot)
            .map_err(|e| redb_error("redb cache: read failed", e))?
        else {
            return Ok(None);
        };
        CachedRows::from_cbor(bytes.value()).map(Some)
    }

    fn generation(&self, namespace: &str) -> Result<u64> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| redb_error("redb cache: cannot begin read", e))?;
        let table = match txn.open_table(GENERATIONS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(redb_error("redb cache: cannot open generations", e)),
        };
        Ok(table
            .get(namespace)
            .map_err(|e| redb_error("redb cache: read failed", e))?
            .map(|g| g.value())
            .unwrap_or(0))
    }

    /// Store `bytes` under `slot`, if `expected` is `None` or the namespace is
    /// still at that generation (checked in the same write transaction).
    fn put(
        &self,
        namespace: &str,
        slot: &str,
        bytes: &[u8],
        expected: Option<u64>,
    ) -> Result<bool> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| redb_error("redb cache: cannot begin write", e))?;
        txn.set_durability(Durability::None)
            .map_err(|e| redb_error("redb cache: cannot set durability", e))?;
        if let Some(expected) = expected {
            let current = {
                let table = txn
                    .open_table(GENERATIONS)
                    .map_err(|e| redb_error("redb cache: cannot open generations", e))?;
                let g = table
                    .get(namespace)
                    .map_err(|e| redb_error("redb cache: read failed", e))?
                    .map(|g| g.value())
                    .unwrap_or(0);
                g
            };
            if current != expected {
                txn.abort()
                    .map_err(|e| redb_error("redb cache: abort failed", e))?;
                return Ok(false);
            }
        }
        {
            let name = table_name(namespace);
            let mut table = txn
                .open_table(slots_table(&name))
                .map_err(|e| redb_error("redb cache: cannot open table", e))?;
            table
                .insert(slot, bytes)
                .map_err(|e| redb_error("redb cache: write failed", e))?;
        }
        txn.commit()
            .map_err(|e| redb_error("redb cache: commit failed", e))?;
        Ok(true)
    }

    fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| redb_error("redb cache: cannot begin write", e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| redb_error("redb cache: cannot set durability", e))?;
        let mut touched: Vec<String> = Vec::new();
        match prefix.split_once('/') {
            Some((namespace, "")) => {
                let dropped = txn
                    .delete_table(slots_table(&table_name(namespace)))
                    .map_err(|e| redb_error("redb cache: cannot drop table", e))?;
                if !dropped {
                    // Nothing of this namespace is stored, so no slot of it
                    // can come back after a crash, whatever becomes of this
                    // commit: every commit that dropped its table was
                    // durable. Only the generation moves, and generations
                    // fence fills within this process only. No sync needed.
                    txn.set_durability(Durability::None)
                        .map_err(|e| redb_error("redb cache: cannot set durability", e))?;
                }
                touched.push(namespace.to_string());
            }
            Some((namespace, within)) => {
                let name = table_name(namespace);
                let mut table = txn
                    .open_table(slots_table(&name))
                    .map_err(|e| redb_error("redb cache: cannot open table", e))?;
                let mut doomed: Vec<String> = Vec::new();
                for entry in table
                    .range(within..)
                    .map_err(|e| redb_error("redb cache: range failed", e))?
                {
                    // A read error must fail the invalidation, not cut it short.
                    let (key, _) = entry.map_err(|e| redb_error("redb cache: scan failed", e))?;
                    let key = key.value();
                    if !key.starts_with(within) {
                        break;
                    }
                    doomed.push(key.to_string());
                }
                for key in doomed {
                    table
                        .remove(key.as_str())
                        .map_err(|e| redb_error("redb cache: remove failed", e))?;
                }
                touched.push(namespace.to_string());
            }
            None => {
                let names: Vec<String> = txn
                    .list_tables()
                    .map_err(|e| redb_error("redb cache: cannot list tables", e))?
                    .map(|t| t.name().to_string())
                    .filter_map(|n| n.strip_prefix(TABLE_PREFIX).map(str::to_string))
                    .filter(|ns| ns.starts_with(prefix))
                    .collect();
                for namespace in names {
                    txn.delete_table(slots_table(&table_name(&namespace)))
                        .map_err(|e| redb_error("redb cache: cannot drop table", e))?;
                    touched.push(namespace);
                }
            }
        }
        {
            let mut generations = txn
                .open_table(GENERATIONS)
                .map_err(|e| redb_error("redb cache: cannot open generations", e))?;
            for namespace in &touched {
                let next = generations
                    .get(namespace.as_str())
                    .map_err(|e| redb_error("redb cache: read failed", e))?
                    .map(|g| g.value())
                    .unwrap_or(0)
                    .wrapping_add(1);
                generations
                    .insert(namespace.as_str(), next)
                    .map_err(|e| redb_error("redb cache: write failed", e))?;
            }
        }
        txn.commit()
            .map_err(|e| redb_error("redb cache: commit failed", e))
    }
}

impl RedbCache {
    /// Store `rows` in the file (under `expected` generation, if given), then
    /// in the front if the file took them and no invalidation reached the
    /// front meanwhile.
    async fn store(&self, key: &str, rows: CachedRows, expected: Option<u64>) -> Result<bool> {
        let front_generation = match &self.front {
            Some(front) => Some(front.generation(key).await?),
            None => None,
        };
        let owned_key = key.to_string();
        let (stored, rows) = self
            .blocking(move |db| {
                let bytes = rows.to_cbor()?;
                let (namespace, slot) = split_key(&owned_key);
                Ok((db.put(namespace, slot, &bytes, expected)?, rows))
            })
            .await?;
        if let (true, Some(front), Some(generation)) = (stored, &self.front, front_generation) {
            front.put_if_generation(key, rows, generation).await?;
        }
        Ok(stored)
    }
}

#[async_trait]
impl Cache for RedbCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        let front_generation = match &self.front {
            Some(front) => {
                if let Some(rows) = front.get(key).await? {
                    return Ok(Some(rows));
                }
                // Taken before reading the file: if an invalidation drops the
                // slot after that read, it moves the front on and the stale
                // copy below is refused.
                Some(front.generation(key).await?)
            }
            None => None,
        };
        let owned_key = key.to_string();
        let found = self
            .blocking(move |db| {
                let (namespace, slot) = split_key(&owned_key);
                db.get(namespace, slot)
            })
            .await?;
        if let (Some(rows), Some(front), Some(generation)) = (&found, &self.front, front_generation)
        {
            front
                .put_if_generation(key, rows.clone(), generation)
                .await?;
        }
        Ok(found)
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        self.store(key, rows, None).await.map(drop)
    }

    /// Drops the slots from the file, then from the front (in that order, so
    /// a read that took the front's generation before this can never put
    /// back a copy read from the file before it).
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let owned = prefix.to_string();
        let disk = self.blocking(move |db| db.invalidate_prefix(&owned)).await;
        if let Some(front) = &self.front {
            front.invalidate_prefix(prefix).await?;
        }
        disk
    }

    async fn generation(&self, key: &str) -> Result<u64> {
        let key = key.to_string();
        self.blocking(move |db| db.generation(split_key(&key).0))
            .await
    }

    async fn put_if_generation(
        &self,
        key: &str,
        rows: CachedRows,
        generation: u64,
    ) -> Result<bool> {
        self.store(key, rows, Some(generation)).await
    }
}
