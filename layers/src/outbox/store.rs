//! The outbox file: pending writes and dead letters in one redb database.
//!
//! Every call here does blocking I/O; the outbox runs them on tokio's
//! blocking pool. Every commit that changes what is pending or rejected is
//! made with [`Durability::Immediate`]: it is on disk (synced) before the
//! call returns.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::entry::{DeadLetter, PendingWrite, FORMAT};
use super::error::{open_error, OpenOutboxError};

/// The file an outbox keeps inside its folder.
pub const FILE_NAME: &str = "outbox.redb";

const PENDING: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("pending");
const DEAD: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("dead_letters");
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");

/// What an opened outbox file holds.
pub(crate) struct Contents {
    pub(crate) pending: Vec<PendingWrite>,
    pub(crate) dead: Vec<DeadLetter>,
    pub(crate) next_seq: u64,
}

/// The open file.
pub(crate) struct Store {
    db: Database,
    file: PathBuf,
}

/// A commit's failure, as text (it becomes part of a marker error).
pub(crate) type StoreResult<T> = Result<T, String>;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Store {
    /// Open (or create) `folder/outbox.redb` and read all of it: every entry
    /// must decode, or the open fails naming the file.
    pub(crate) fn open(folder: &Path) -> Result<(Store, Contents), OpenOutboxError> {
        if let Err(source) = std::fs::create_dir_all(folder) {
            return Err(OpenOutboxError::Folder {
                folder: folder.to_path_buf(),
                source,
            });
        }
        let file = folder.join(FILE_NAME);
        // redb asserts on some damaged files (a truncated one can fail a
        // length check with a panic): a broken file is an error here, never
        // a panic of the caller.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open_file(&file))) {
            Ok(opened) => opened,
            Err(payload) => {
                let details = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "redb stopped on it".to_string());
                Err(OpenOutboxError::Corrupt {
                    file,
                    details: format!("unreadable: {details}"),
                })
            }
        }
    }

    fn open_file(file: &Path) -> Result<(Store, Contents), OpenOutboxError> {
        let file = file.to_path_buf();
        let db = Database::create(&file).map_err(|e| open_error(file.clone(), e))?;
        let corrupt = |details: String| OpenOutboxError::Corrupt {
            file: file.clone(),
            details,
        };
        // Check the format before writing anything: a file that is not an
        // outbox must be left exactly as it is.
        let is_new = {
            let txn = db
                .begin_read()
                .map_err(|e| corrupt(format!("cannot begin a read: {e}")))?;
            let tables: Vec<String> = txn
                .list_tables()
                .map_err(|e| corrupt(format!("cannot list tables: {e}")))?
                .map(|t| redb::TableHandle::name(&t).to_string())
                .collect();
            if tables.is_empty() {
                true
            } else {
                let meta = match txn.open_table(META) {
                    Ok(meta) => meta,
                    Err(TableError::TableDoesNotExist(_)) => {
                        return Err(corrupt("no format version: not an outbox file".into()))
                    }
                    Err(e) => return Err(corrupt(format!("cannot open the meta table: {e}"))),
                };
                let format = meta
                    .get("format")
                    .map_err(|e| corrupt(format!("cannot read the format: {e}")))?
                    .map(|v| v.value());
                match format {
                    Some(FORMAT) => false,
                    Some(other) => {
                        return Err(corrupt(format!(
                            "format version {other}; this build reads version {FORMAT}"
                        )))
                    }
                    None => return Err(corrupt("no format version: not an outbox file".into())),
                }
            }
        };
        if is_new {
            let mut txn = db
                .begin_write()
                .map_err(|e| corrupt(format!("cannot begin a write: {e}")))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| corrupt(e.to_string()))?;
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| corrupt(format!("cannot create the meta table: {e}")))?;
                meta.insert("format", FORMAT)
                    .map_err(|e| corrupt(e.to_string()))?;
                txn.open_table(PENDING)
                    .map_err(|e| corrupt(format!("cannot create the pending table: {e}")))?;
                txn.open_table(DEAD)
                    .map_err(|e| corrupt(format!("cannot create the dead-letter table: {e}")))?;
            }
            txn.commit()
                .map_err(|e| corrupt(format!("cannot commit: {e}")))?;
        }
        let contents = read_all(&db).map_err(corrupt)?;
        Ok((Store { db, file }, contents))
    }

    /// The outbox file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    fn write(
        &self,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> StoreResult<()> {
        let mut txn = self.db.begin_write().map_err(text)?;
        txn.set_durability(Durability::Immediate).map_err(text)?;
        change(&txn).map_err(text)?;
        txn.commit().map_err(text)
    }

    /// Store `write` as pending, synced, and move `next_seq` past it.
    pub(crate) fn append(&self, write: &PendingWrite) -> StoreResult<()> {
        let bytes = write.encode();
        self.write(|txn| {
            txn.open_table(PENDING)?
                .insert(write.seq, bytes.as_slice())?;
            txn.open_table(META)?.insert("next_seq", write.seq + 1)?;
            Ok(())
        })
    }

    /// Drop pending write `seq` (the master accepted it), synced.
    pub(crate) fn remove(&self, seq: u64) -> StoreResult<()> {
        self.write(|txn| {
            txn.open_table(PENDING)?.remove(seq)?;
            Ok(())
        })
    }

    /// Move pending write `seq` to the dead letters, in one synced commit.
    pub(crate) fn reject(&self, dead: &DeadLetter) -> StoreResult<()> {
        let bytes = dead.encode();
        let seq = dead.write.seq;
        self.write(|txn| {
            txn.open_table(PENDING)?.remove(seq)?;
            txn.open_table(DEAD)?.insert(seq, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Drop dead letters: `Some(seq)` one, `None` all. Answers which went.
    pub(crate) fn clear_dead(&self, seq: Option<u64>) -> StoreResult<Vec<u64>> {
        let mut removed = Vec::new();
        self.write(|txn| {
            let mut table = txn.open_table(DEAD)?;
            match seq {
                Some(seq) => {
                    if table.remove(seq)?.is_some() {
                        removed.push(seq);
                    }
                }
                None => {
                    for entry in table.iter()? {
                        removed.push(entry?.0.value());
                    }
                    table.retain(|_, _| false)?;
                }
            }
            Ok(())
        })?;
        Ok(removed)
    }
}

fn read_all(db: &Database) -> Result<Contents, String> {
    let txn = db
        .begin_read()
        .map_err(|e| format!("cannot begin a read: {e}"))?;
    let open = |def| match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(format!("cannot open a table: {e}")),
    };
    let mut pending = Vec::new();
    let mut last = None;
    if let Some(table) = open(PENDING)? {
        for item in table.iter().map_err(|e| format!("cannot read: {e}"))? {
            let (seq, bytes) = item.map_err(|e| format!("cannot read an entry: {e}"))?;
            let seq = seq.value();
            let write = PendingWrite::decode(seq, bytes.value())
                .map_err(|e| format!("pending write #{seq}: {}", e.0))?;
            last = Some(seq);
            pending.push(write);
        }
    }
    let mut dead = Vec::new();
    if let Some(table) = open(DEAD)? {
        for item in table.iter().map_err(|e| format!("cannot read: {e}"))? {
            let (seq, bytes) = item.map_err(|e| format!("cannot read a dead letter: {e}"))?;
            let seq = seq.value();
            let letter = DeadLetter::decode(seq, bytes.value())
                .map_err(|e| format!("dead letter #{seq}: {}", e.0))?;
            last = last.max(Some(seq));
            dead.push(letter);
        }
    }
    let meta = txn
        .open_table(META)
        .map_err(|e| format!("cannot open the meta table: {e}"))?;
    let stored = meta
        .get("next_seq")
        .map_err(|e| format!("cannot read next_seq: {e}"))?
        .map(|v| v.value())
        .unwrap_or(1);
    let next_seq = stored.max(last.map_or(1, |l| l + 1));
    Ok(Contents {
        pending,
        dead,
        next_seq,
    })
}
