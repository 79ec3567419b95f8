//! The file under a [`RedbCache`](super::RedbCache): slots in redb tables,
//! and what the cache knows about what is stored and what is durable.
//!
//! Every call here does blocking I/O: the cache runs them on tokio's
//! blocking pool.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError,
    TableHandle, WriteTransaction,
};
use vantage_core::{error, Result, VantageError};
use vantage_live_layers::cache::{Namespace, Prefix, Ticket};

/// Table names start with this; the rest is the namespace (escaped cache_key).
const TABLE_PREFIX: &str = "__vlive__";

fn slots_table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

fn table_name(namespace: &str) -> String {
    format!("{TABLE_PREFIX}{namespace}")
}

/// Wraps a redb error with what was being done.
fn redb_error(what: &'static str, e: impl fmt::Display) -> VantageError {
    error!(what, details = e.to_string())
}

/// The cache file and what the cache knows about it.
pub(super) struct Disk {
    db: Database,
    /// Per namespace: whether a table of it may exist in the file. Read
    /// without a lock by invalidations (so that dropping a cache_key with
    /// nothing stored does no I/O); set by fills *before* they check their
    /// ticket, cleared by drops, both inside `writes`.
    tables: RwLock<HashMap<Box<str>, Arc<AtomicBool>>>,
    /// Held across every write transaction.
    writes: Mutex<Durable>,
    /// How long fills may commit without a sync, in nanoseconds.
    checkpoint_nanos: AtomicU64,
}

/// What the last synced commit may hold: kept under the write lock.
struct Durable {
    /// Namespaces whose slots the last synced commit may hold. Dropping them
    /// must sync; dropping slots no synced commit ever held need not (a
    /// crash cannot bring back what never reached the disk).
    namespaces: HashSet<Box<str>>,
    /// When the last synced commit was made.
    last_sync: Instant,
}

/// What a drop removes from a namespace's table.
pub(super) enum Doomed<'a> {
    /// The whole table.
    Table,
    /// The slots whose key starts with this.
    Prefix(&'a str),
    /// Exactly these slots.
    Slots(&'a [Arc<str>]),
}

impl Disk {
    /// Over `db`; every table already in the file is taken to be durable
    /// (it was, when the previous process closed it or crashed).
    pub(super) fn new(db: Database, checkpoint: Duration) -> Result<Self> {
        let existing: Vec<String> = {
            let txn = db
                .begin_read()
                .map_err(|e| redb_error("redb cache: cannot begin read", e))?;
            let names = txn
                .list_tables()
                .map_err(|e| redb_error("redb cache: cannot list tables", e))?
                .filter_map(|t| t.name().strip_prefix(TABLE_PREFIX).map(str::to_owned))
                .collect();
            names
        };
        let tables = existing
            .iter()
            .map(|ns| (Box::from(ns.as_str()), Arc::new(AtomicBool::new(true))))
            .collect();
        Ok(Self {
            db,
            tables: RwLock::new(tables),
            writes: Mutex::new(Durable {
                namespaces: existing.into_iter().map(Box::from).collect(),
                last_sync: Instant::now(),
            }),
            checkpoint_nanos: AtomicU64::new(nanos(checkpoint)),
        })
    }

    /// Let fills go `checkpoint` without a synced commit.
    pub(super) fn set_checkpoint(&self, checkpoint: Duration) {
        self.checkpoint_nanos
            .store(nanos(checkpoint), Ordering::Relaxed);
    }

    /// The namespaces `prefix` covers of which a table may exist. Read
    /// after the invalidation moved the generations (see [`Disk::put`]).
    pub(super) fn holding(&self, prefix: &Prefix) -> Vec<String> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(namespace, flag)| prefix.covers(namespace) && flag.load(Ordering::SeqCst))
            .map(|(namespace, _)| namespace.to_string())
            .collect()
    }

    /// The namespaces starting with `namespace_prefix` of which a table may
    /// exist (tables written by an earlier run included), read as
    /// [`Disk::holding`] is.
    pub(super) fn holding_starting_with(&self, namespace_prefix: &str) -> Vec<String> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(namespace, flag)| {
                namespace.starts_with(namespace_prefix) && flag.load(Ordering::SeqCst)
            })
            .map(|(namespace, _)| namespace.to_string())
            .collect()
    }

    fn table_flag(&self, namespace: &str) -> Arc<AtomicBool> {
        if let Some(flag) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
        {
            return flag.clone();
        }
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(namespace.into())
            .or_default()
            .clone()
    }

    /// The bytes of slot `slot` of `namespace`, copied out of the file (the
    /// caller decodes them on its own thread: see [`RedbCache::lookup`]).
    ///
    /// [`RedbCache::lookup`]: super::RedbCache
    pub(super) fn get(&self, namespace: &str, slot: &str) -> Result<Option<Vec<u8>>> {
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
        Ok(Some(bytes.value().to_vec()))
    }

    /// Store `bytes` under `slot`, if `fence` is `None` or its ticket is
    /// still current (checked inside the write lock, after marking the
    /// namespace as holding a table: see [`Disk::drop_slots`]).
    pub(super) fn put(
        &self,
        namespace: &Namespace,
        slot: &str,
        bytes: &[u8],
        fence: Option<Ticket>,
    ) -> Result<bool> {
        let mut durable = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let flag = self.table_flag(namespace.name());
        // Set before the check: an invalidation moves the generation before
        // it reads this flag, so either it sees the flag (and drops what we
        // store, after us) or we see its move (and store nothing).
        flag.store(true, Ordering::SeqCst);
        if let Some(ticket) = fence {
            if !ticket.is_current(namespace) {
                return Ok(false);
            }
        }
        let txn = self.begin_write()?;
        {
            let name = table_name(namespace.name());
            let mut table = txn
                .open_table(slots_table(&name))
                .map_err(|e| redb_error("redb cache: cannot open table", e))?;
            table
                .insert(slot, bytes)
                .map_err(|e| redb_error("redb cache: write failed", e))?;
        }
        // Fills do not sync, except a checkpoint now and then, so that a
        // process that dies without closing the cache keeps most of it.
        let checkpoint = Duration::from_nanos(self.checkpoint_nanos.load(Ordering::Relaxed));
        let sync = durable.last_sync.elapsed() >= checkpoint;
        self.commit(txn, &mut durable, sync)?;
        Ok(true)
    }

    /// Drop what `doomed` says from `namespace`'s table. Syncs only if the
    /// last synced commit may hold slots of the namespace: after a crash, a
    /// slot dropped by an acknowledged invalidation never comes back.
    pub(super) fn drop_slots(&self, namespace: &str, doomed: Doomed<'_>) -> Result<()> {
        let mut durable = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let sync = durable.namespaces.contains(namespace);
        let txn = self.begin_write()?;
        let name = table_name(namespace);
        let whole = match doomed {
            Doomed::Table => {
                txn.delete_table(slots_table(&name))
                    .map_err(|e| redb_error("redb cache: cannot drop table", e))?;
                true
            }
            Doomed::Prefix(within) => {
                remove_prefix(&txn, &name, within)?;
                false
            }
            Doomed::Slots(slots) => {
                let mut table = txn
                    .open_table(slots_table(&name))
                    .map_err(|e| redb_error("redb cache: cannot open table", e))?;
                for slot in slots {
                    table
                        .remove(&**slot)
                        .map_err(|e| redb_error("redb cache: remove failed", e))?;
                }
                false
            }
        };
        self.commit(txn, &mut durable, sync)?;
        if whole {
            // Still under the write lock: no fill can set it in between.
            self.table_flag(namespace).store(false, Ordering::SeqCst);
            durable.namespaces.remove(namespace);
        }
        Ok(())
    }

    fn begin_write(&self) -> Result<WriteTransaction> {
        self.db
            .begin_write()
            .map_err(|e| redb_error("redb cache: cannot begin write", e))
    }

    /// Commit, syncing if asked. A synced commit makes every earlier commit
    /// durable too: every namespace with a table is then durable.
    fn commit(&self, mut txn: WriteTransaction, durable: &mut Durable, sync: bool) -> Result<()> {
        let level = if sync {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(level)
            .map_err(|e| redb_error("redb cache: cannot set durability", e))?;
        if sync {
            // Before the commit: if it fails, thinking more is durable than
            // is only costs syncs.
            let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
            for (namespace, flag) in tables.iter() {
                if flag.load(Ordering::SeqCst) {
                    durable.namespaces.insert(namespace.clone());
                }
            }
        }
        txn.commit()
            .map_err(|e| redb_error("redb cache: commit failed", e))?;
        if sync {
            durable.last_sync = Instant::now();
        }
        Ok(())
    }
}

/// Remove the keys of table `name` that start with `within`.
fn remove_prefix(txn: &WriteTransaction, name: &str, within: &str) -> Result<()> {
    let mut table = txn
        .open_table(slots_table(name))
        .map_err(|e| redb_error("redb cache: cannot open table", e))?;
    let mut keys: Vec<String> = Vec::new();
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
        keys.push(key.to_owned());
    }
    for key in keys {
        table
            .remove(key.as_str())
            .map_err(|e| redb_error("redb cache: remove failed", e))?;
    }
    Ok(())
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
