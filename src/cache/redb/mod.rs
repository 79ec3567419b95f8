//! [`RedbCache`]: a disk cache in one redb file, with a memory front.

mod disk;
mod open;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redb::Database;
use vantage_core::{error, Result};
use vantage_live_layers::cache::{
    split_key, Generations, Namespace, Peek, Prefix, Scope, SlotKeys, Ticket,
};
use vantage_live_layers::{Cache, CachedRows, CachedSlot, RowChange};

use self::disk::{Disk, Doomed};
pub use self::open::OpenCacheError;
use super::mem::{typed, MemCacheBuilder, DEFAULT_MAX_WEIGHT};
use super::slot_store::SlotStore;

/// The default weight of a [`RedbCache`]'s memory front: 64 MiB.
pub const DEFAULT_FRONT_WEIGHT: u64 = DEFAULT_MAX_WEIGHT;

/// The file a [`RedbCache`] keeps inside its folder.
pub const FILE_NAME: &str = "vlive.redb";

/// How long fills may go without a synced commit: the first fill after this
/// long syncs (a checkpoint).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// A [`Cache`] on disk: one redb file, `vlive.redb`, inside a folder, with one
/// redb table per cache_key (`__vlive__<namespace>`) and CBOR-encoded
/// [`CachedSlot`]s as values, and decoded slots kept in a memory front.
///
/// - **Survives restarts.** Slots written by one process are served to the
///   next one that opens the folder.
/// - **One trip per lookup.** The invalidation state lives in memory (one
///   process owns the folder): a hit in the memory front costs what a
///   `MemCache` hit costs, a slot only on disk costs one trip to tokio's
///   blocking pool, and a fill one more.
/// - **Durability chosen for a cache.** A crash may lose recent fills, which
///   only costs misses; it never brings back a slot that an acknowledged
///   invalidation dropped:
///   - fills commit without a sync ([`Durability::None`](redb::Durability)),
///     except one every [`CHECKPOINT_INTERVAL`] (5 s), which syncs so that a
///     process killed without closing the cache keeps most of it;
///   - an invalidation syncs only if the last synced commit may hold slots
///     it drops; slots that never reached a synced commit cannot come back
///     after a crash, so dropping them needs no sync;
///   - an invalidation of a cache_key with nothing on disk does no I/O at
///     all;
///   - closing the cache (dropping the last clone) syncs everything.
/// - **Fenced fills.** A fill stores only if no invalidation of its
///   cache_key started since its read missed, checked inside the redb write
///   transaction; invalidations drop inside write transactions too, and redb
///   runs them one at a time.
/// - **Never blocks the runtime.** Every redb call runs on tokio's blocking
///   pool (`spawn_blocking`), so use it inside a tokio runtime.
/// - **One process per folder.** redb locks the file; a second open, from this
///   process or another, fails with [`OpenCacheError::AlreadyOpen`].
/// - **Clones share everything that matters.** Clones share the file and
///   the invalidation state ([`Generations`]); a clone given its own front
///   with [`RedbCache::with_memory_front`] keeps its own decoded copies, all
///   fenced by the same state, so no clone serves a slot another clone's
///   write or event has dropped.
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
    front: Option<Arc<SlotStore>>,
}

struct Inner {
    disk: Disk,
    folder: PathBuf,
    generations: Generations,
    /// Every clone's front, so that a row-level drop reaches them all (a
    /// whole drop reaches them through the namespace's epoch).
    fronts: Mutex<Vec<Weak<SlotStore>>>,
}

impl Inner {
    /// A new front, known to row-level drops.
    fn front(&self, max_weight: u64) -> Arc<SlotStore> {
        let front = Arc::new(SlotStore::new(
            MemCacheBuilder::default().max_weight(max_weight).slots(),
        ));
        let mut fronts = self.fronts.lock().unwrap_or_else(|e| e.into_inner());
        fronts.retain(|f| f.strong_count() > 0);
        fronts.push(Arc::downgrade(&front));
        front
    }

    fn fronts(&self) -> Vec<Arc<SlotStore>> {
        let fronts = self.fronts.lock().unwrap_or_else(|e| e.into_inner());
        fronts.iter().filter_map(Weak::upgrade).collect()
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
            Err(e) => return Err(open::open_error(folder, e)),
        };
        let disk = match Disk::new(db, CHECKPOINT_INTERVAL) {
            Ok(disk) => disk,
            Err(e) => {
                return Err(OpenCacheError::Corrupt {
                    folder,
                    details: e.to_string(),
                })
            }
        };
        let generations = Generations::new();
        // What an earlier process left: no row index knows what it holds.
        for namespace in disk.holding(&Prefix::parse("")) {
            generations.namespace(&namespace).stored_unrecorded();
        }
        let inner = Arc::new(Inner {
            disk,
            folder,
            generations,
            fronts: Mutex::new(Vec::new()),
        });
        Ok(Self {
            front: Some(inner.front(DEFAULT_FRONT_WEIGHT)),
            inner,
        })
    }

    /// Keep up to `max_weight` bytes of decoded slots in memory in front of
    /// the file (default [`DEFAULT_FRONT_WEIGHT`], 64 MiB; `0` turns the
    /// front off).
    ///
    /// A hit in the front costs what a [`MemCache`](super::MemCache) hit
    /// costs; a slot only on disk is read on the blocking pool, decoded, and
    /// kept in the front for the next hit. The front is fenced by the same
    /// invalidation state as the file, shared by every clone, so it never
    /// holds a slot an invalidation has dropped. The returned cache has a
    /// front of its own (clones taken from it share it). The front is empty
    /// after a restart; the file is what survives.
    pub fn with_memory_front(mut self, max_weight: u64) -> Self {
        self.front = (max_weight > 0).then(|| self.inner.front(max_weight));
        self
    }

    /// Let fills go up to `interval` without a synced commit (default
    /// [`CHECKPOINT_INTERVAL`], 5 s): the first fill after that long syncs,
    /// so that a process killed without closing the cache keeps what it
    /// filled before. `Duration::ZERO` syncs every fill. The setting is the
    /// file's: it applies to every clone.
    pub fn with_checkpoint_interval(self, interval: Duration) -> Self {
        self.inner.disk.set_checkpoint(interval);
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

    /// Run `work` on the blocking pool with the file.
    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Disk) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner.disk))
            .await
            .map_err(|e| error!("redb cache task failed", details = e))?
    }

    fn namespace(&self, key: &str) -> (Arc<Namespace>, String) {
        let (namespace, slot) = split_key(key);
        (self.inner.generations.namespace(namespace), slot.to_owned())
    }
}

impl fmt::Debug for RedbCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbCache")
            .field("folder", &self.inner.folder)
            .field("front", &self.front.is_some())
            .finish()
    }
}

#[async_trait]
impl Cache for RedbCache {
    async fn get(&self, key: &str) -> Result<Option<CachedRows>> {
        let (namespace, _) = self.namespace(key);
        let found = self
            .lookup(key, &namespace, &mut namespace.ticket())
            .await?;
        Ok(found.and_then(|slot| slot.to_rows(key)))
    }

    async fn put(&self, key: &str, rows: CachedRows) -> Result<()> {
        let slot = typed(key, rows)?;
        let (namespace, within) = self.namespace(key);
        // Stored behind the row index's back: row-level drops fall back to
        // whole ones until a whole drop.
        namespace.stored_unrecorded();
        let (ns, name, value) = (namespace.clone(), within.clone(), slot.clone());
        self.blocking(move |disk| {
            let bytes = value.to_cbor()?;
            disk.put(&ns, &name, &bytes, None)
        })
        .await?;
        if let Some(front) = &self.front {
            front.put(&namespace, &within, slot);
        }
        Ok(())
    }

    /// Moves the generations first (and the front's epochs), then drops from
    /// the file what it holds of the prefix, if anything.
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        let drop = self
            .inner
            .generations
            .start_drop(prefix, self.front.is_none());
        let parsed = Prefix::parse(prefix);
        let on_disk = self.inner.disk.holding(&parsed);
        let outcome = if on_disk.is_empty() {
            Ok(())
        } else {
            self.blocking(move |disk| {
                for namespace in &on_disk {
                    let doomed = match &parsed.scope {
                        Scope::Whole => Doomed::Table,
                        Scope::Within(within) => Doomed::Prefix(within),
                    };
                    disk.drop_slots(namespace, doomed)?;
                }
                Ok(())
            })
            .await
        };
        drop.finish(&outcome);
        outcome
    }

    /// Moves the generations (and the front's epochs) of the matching
    /// cache_keys this process used, then drops every matching table the
    /// file holds, those an earlier run wrote included.
    async fn invalidate_cache_keys_starting_with(&self, cache_key_prefix: &str) -> Result<()> {
        let namespace_prefix = SlotKeys::new(cache_key_prefix).namespace().to_owned();
        let drop = self.inner.generations.start_group_drop(&namespace_prefix);
        let on_disk = self.inner.disk.holding_starting_with(&namespace_prefix);
        let outcome = if on_disk.is_empty() {
            Ok(())
        } else {
            self.blocking(move |disk| {
                for namespace in &on_disk {
                    disk.drop_slots(namespace, Doomed::Table)?;
                }
                Ok(())
            })
            .await
        };
        drop.finish(&outcome);
        outcome
    }

    /// Removes exactly the slots the change can make wrong from the file
    /// (one write transaction) and from every clone's front; the whole
    /// cache_key if the row index cannot tell (slots an earlier process
    /// left included, until the first whole drop).
    async fn invalidate_rows(&self, namespace: &Arc<Namespace>, change: &RowChange) -> Result<()> {
        let Some(drop) = namespace.start_row_drop(change) else {
            return self.invalidate_prefix(&namespace.whole_prefix()).await;
        };
        let slots: Arc<[Arc<str>]> = drop.slots().into();
        let on_disk = !self
            .inner
            .disk
            .holding(&Prefix::parse(&namespace.whole_prefix()))
            .is_empty();
        let outcome = if on_disk && !slots.is_empty() {
            let (name, doomed) = (namespace.name().to_owned(), slots.clone());
            self.blocking(move |disk| disk.drop_slots(&name, Doomed::Slots(&doomed)))
                .await
        } else {
            Ok(())
        };
        // Settled (the generation moved again) before the fronts are
        // cleared: a lookup that read a doomed slot from the file before it
        // went either copies it into a front before this point (and the
        // removal below takes it out) or is refused by the move.
        drop.finish(&outcome);
        for front in self.inner.fronts() {
            for slot in slots.iter() {
                front.remove(namespace, slot);
            }
        }
        outcome
    }

    fn drops_rows(&self) -> bool {
        true
    }

    fn generations(&self) -> Option<&Generations> {
        Some(&self.inner.generations)
    }

    fn peek(&self, key: &str, namespace: &Arc<Namespace>) -> Peek {
        match &self.front {
            Some(front) => match front.get(namespace, split_key(key).1) {
                Some(slot) => Peek::Hit(slot),
                None => Peek::Unknown,
            },
            None => Peek::Unknown,
        }
    }

    /// The front, else one trip to the file; a slot found on disk is kept in
    /// the front (unless an invalidation started while it was read).
    async fn lookup(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        // Taken before this lookup: a slot read from the file is copied into
        // the front only if no invalidation started (or ended) since.
        let ticket = *ticket;
        let within = split_key(key).1;
        if let Some(front) = &self.front {
            if let Some(slot) = front.get(namespace, within) {
                return Ok(Some(slot));
            }
        }
        let (name, slot) = (namespace.name().to_owned(), within.to_owned());
        let bytes = self.blocking(move |disk| disk.get(&name, &slot)).await?;
        // Decoded here, not on the blocking pool: the rows are then
        // allocated by the thread that will most likely free them (a free
        // from another thread costs glibc's allocator a lock and a
        // consolidation), and the decode is CPU work like a copy of the rows.
        let found = bytes.map(|b| CachedSlot::from_cbor(&b)).transpose()?;
        if let (Some(slot), Some(front)) = (&found, &self.front) {
            front.fill(namespace, ticket, within, slot.clone());
        }
        Ok(found)
    }

    async fn fill(
        &self,
        key: &str,
        namespace: &Arc<Namespace>,
        ticket: Ticket,
        slot: CachedSlot,
    ) -> Result<bool> {
        let within = split_key(key).1;
        let (ns, name, value) = (namespace.clone(), within.to_owned(), slot.clone());
        let stored = self
            .blocking(move |disk| {
                let bytes = value.to_cbor()?;
                disk.put(&ns, &name, &bytes, Some(ticket))
            })
            .await?;
        if let (true, Some(front)) = (stored, &self.front) {
            front.fill(namespace, ticket, within, slot);
        }
        Ok(stored)
    }
}
