//! What only `RedbCache` promises: slots survive a restart, an
//! acknowledged invalidation survives a crash, a second open (from this
//! process or another) is refused, a broken file gives an error that names
//! the folder and says how to reset it, and an undecodable slot is an error,
//! never a panic.

mod common;

use std::path::Path;

use common::slots::{assert_identical, assert_same_slot, every_kind_slot, rows, slot_for, slots};
use vantage_live::cache::{split_key, OpenCacheError, SlotKeys, REDB_FILE_NAME};
use vantage_live::{Cache, CachedSlot, RedbCache};
use vantage_live_layers::View;

/// Fill `key` at a fresh ticket (it lands).
async fn fill(cache: &RedbCache, key: &str, slot: CachedSlot) {
    let ns = cache
        .generations()
        .expect("RedbCache owns its state")
        .namespace(split_key(key).0);
    assert!(cache.fill(key, &ns, ns.ticket(), slot).await.unwrap());
}

/// The typed slot under `key`.
async fn lookup(cache: &RedbCache, key: &str) -> Option<CachedSlot> {
    let ns = cache
        .generations()
        .expect("RedbCache owns its state")
        .namespace(split_key(key).0);
    cache.lookup(key, &ns, &mut ns.ticket()).await.unwrap()
}

fn redb_file(folder: &Path) -> std::path::PathBuf {
    folder.join(REDB_FILE_NAME)
}

/// `err` names the cache folder or its file, and says how to reset.
fn assert_names_folder_and_reset(err: &OpenCacheError, folder: &Path) {
    let message = err.to_string();
    assert_eq!(err.folder(), folder, "folder(): {message}");
    assert!(
        message.contains(&folder.display().to_string()),
        "message does not name {}: {message}",
        folder.display()
    );
    assert!(
        message.contains("reset") || message.contains("delete"),
        "message does not say how to reset: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_persists_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let kept = SlotKeys::new("kept");
    let dropped = SlotKeys::new("dropped");
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        assert_eq!(cache.folder(), dir.path());
        for key in slots(&kept).into_iter().chain(slots(&dropped)) {
            fill(&cache, &key, every_kind_slot(&key)).await;
        }
        cache.invalidate_prefix(dropped.prefix()).await.unwrap();
        // A fill after the last invalidation must survive too.
        fill(
            &cache,
            &slots(&kept)[0],
            slot_for(&slots(&kept)[0], "last fill"),
        )
        .await;
    }
    assert!(
        redb_file(dir.path()).is_file(),
        "one vlive.redb in the folder"
    );

    let cache = RedbCache::open(dir.path()).expect("reopen after close");
    let last = &slots(&kept)[0];
    let got = lookup(&cache, last).await.expect("kept");
    assert_same_slot(&slot_for(last, "last fill"), &got, "last fill after reopen");
    for key in &slots(&kept)[1..] {
        let got = lookup(&cache, key).await.expect("kept slot");
        // Typed, and bit for bit: every CBOR value kind survives the file.
        let mut expected = every_kind_slot(key);
        expected.fetched_at = got.fetched_at;
        assert_same_slot(&expected, &got, key);
    }
    for key in slots(&dropped) {
        assert!(lookup(&cache, &key).await.is_none(), "{key} came back");
    }
}

/// A group drop after a restart finds the cache_keys an earlier run cached
/// (this run never used them) in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_drop_finds_cache_keys_an_earlier_run_cached() {
    let dir = tempfile::tempdir().unwrap();
    let member = SlotKeys::new("clients?name=Ada").list(&View::new());
    let other = SlotKeys::new("clients").list(&View::new());
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        fill(&cache, &member, slot_for(&member, "earlier run")).await;
        fill(&cache, &other, slot_for(&other, "earlier run")).await;
    }
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        cache
            .invalidate_cache_keys_starting_with("clients?")
            .await
            .unwrap();
    }
    let cache = RedbCache::open(dir.path()).unwrap();
    assert!(
        lookup(&cache, &member).await.is_none(),
        "the member came back"
    );
    assert!(
        lookup(&cache, &other).await.is_some(),
        "a non-member was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_garbage_file_is_corrupt_and_names_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(redb_file(dir.path()), &garbage).unwrap();
    let err = RedbCache::open(dir.path()).expect_err("garbage must not open");
    assert!(
        matches!(err, OpenCacheError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_names_folder_and_reset(&err, dir.path());
    // The file is left alone: the cache never deletes on its own.
    assert_eq!(std::fs::read(redb_file(dir.path())).unwrap(), garbage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_short_garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(redb_file(dir.path()), b"this is not a redb file").unwrap();
    let err = RedbCache::open(dir.path()).expect_err("garbage must not open");
    assert!(
        matches!(err, OpenCacheError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_names_folder_and_reset(&err, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_truncated_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        for key in slots(&SlotKeys::new("k")) {
            fill(&cache, &key, every_kind_slot(&key)).await;
        }
    }
    let full = std::fs::read(redb_file(dir.path())).unwrap();
    assert!(full.len() > 512, "a redb file with data");
    std::fs::write(redb_file(dir.path()), &full[..full.len().min(300)]).unwrap();
    let err = RedbCache::open(dir.path()).expect_err("a truncated file must not open");
    assert!(
        matches!(err, OpenCacheError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert_names_folder_and_reset(&err, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_zero_length_file_opens_empty() {
    // A zero-length file (e.g. created, then the process died) holds no
    // cache at all; redb initialises it like a new file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(redb_file(dir.path()), b"").unwrap();
    let cache = RedbCache::open(dir.path()).expect("an empty file opens as an empty cache");
    let key = &slots(&SlotKeys::new("k"))[0];
    assert!(cache.get(key).await.unwrap().is_none());
    cache.put(key, rows("a")).await.unwrap();
    assert_identical(&rows("a"), &cache.get(key).await.unwrap().unwrap(), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_double_open_is_already_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = RedbCache::open(dir.path()).unwrap();
    let err = RedbCache::open(dir.path()).expect_err("second open while the first is alive");
    assert!(
        matches!(err, OpenCacheError::AlreadyOpen { .. }),
        "expected AlreadyOpen, got {err:?}"
    );
    assert_eq!(err.folder(), dir.path());
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "message does not name the folder: {err}"
    );
    // A clone is the same cache, not a second open.
    let clone = first.clone();
    clone.put("k/x", rows("x")).await.unwrap();
    assert!(first.get("k/x").await.unwrap().is_some());
    drop(first);
    // Still open through the clone.
    assert!(matches!(
        RedbCache::open(dir.path()),
        Err(OpenCacheError::AlreadyOpen { .. })
    ));
    drop(clone);
    let reopened = RedbCache::open(dir.path()).expect("open once every handle is gone");
    assert!(reopened.get("k/x").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reset_then_open_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    // Resetting a folder without a cache file is not an error.
    RedbCache::reset(dir.path()).expect("reset of a missing file");

    let neighbour = dir.path().join("keep-me.txt");
    std::fs::write(&neighbour, b"not the cache's").unwrap();
    std::fs::write(redb_file(dir.path()), b"garbage garbage garbage").unwrap();
    assert!(RedbCache::open(dir.path()).is_err());

    RedbCache::reset(dir.path()).expect("reset");
    assert!(!redb_file(dir.path()).exists());
    assert_eq!(std::fs::read(&neighbour).unwrap(), b"not the cache's");

    let cache = RedbCache::open(dir.path()).expect("open after reset");
    let key = &slots(&SlotKeys::new("k"))[0];
    assert!(cache.get(key).await.unwrap().is_none());
    cache.put(key, rows("a")).await.unwrap();
    assert!(cache.get(key).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reset_of_a_healthy_cache_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = slots(&SlotKeys::new("k"))[0].clone();
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        cache.put(&key, rows("a")).await.unwrap();
    }
    RedbCache::reset(dir.path()).unwrap();
    let cache = RedbCache::open(dir.path()).unwrap();
    assert!(cache.get(&key).await.unwrap().is_none());
}

#[test]
fn redb_open_on_a_file_is_a_folder_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("plain-file");
    std::fs::write(&not_a_folder, b"x").unwrap();
    let err = RedbCache::open(&not_a_folder).expect_err("a file is not a folder");
    assert!(
        matches!(err, OpenCacheError::Folder { .. }),
        "expected Folder, got {err:?}"
    );
    assert_eq!(err.folder(), not_a_folder);
    assert!(err
        .to_string()
        .contains(&not_a_folder.display().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_creates_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let cache = RedbCache::open(&nested).expect("creates the folder");
    assert!(redb_file(&nested).is_file());
    cache.put("k/x", rows("x")).await.unwrap();
    assert_eq!(cache.get("k/x").await.unwrap(), Some(rows("x")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_undecodable_slot_is_an_error_not_a_panic() {
    // Plant bytes that are not CachedRows where a slot lives, with redb itself.
    let dir = tempfile::tempdir().unwrap();
    let k = SlotKeys::new("k");
    let key = k.list(&View::new());
    let (namespace, slot) = vantage_live_layers::cache::split_key(&key);
    {
        let db = redb::Database::create(redb_file(dir.path())).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let name = format!("__vlive__{namespace}");
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new(&name);
            let mut table = txn.open_table(def).unwrap();
            table.insert(slot, &b"\xff\x00garbage"[..]).unwrap();
        }
        txn.commit().unwrap();
    }
    let cache = RedbCache::open(dir.path()).unwrap();
    let err = cache
        .get(&key)
        .await
        .expect_err("undecodable slot must be an error");
    assert!(
        err.to_string().contains("CBOR") || err.to_string().contains("shape"),
        "{err}"
    );
    // Overwriting and invalidating still work.
    cache.put(&key, rows("a")).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_some());
    cache.invalidate_prefix(k.prefix()).await.unwrap();
    assert!(cache.get(&key).await.unwrap().is_none());
}

/// Set by `redb_acknowledged_invalidation_survives_a_crash` for its child.
const CRASH_DIR_VAR: &str = "VLIVE_TEST_CRASH_DIR";

/// The child process of `redb_acknowledged_invalidation_survives_a_crash`:
/// opens the cache, invalidates cache_keys (some twice in a row, the second
/// time with nothing stored), and aborts without closing.
/// Does nothing unless that test spawned it.
#[test]
#[ignore = "helper: the child process of redb_acknowledged_invalidation_survives_a_crash"]
fn redb_crash_child() {
    let Ok(folder) = std::env::var(CRASH_DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cache = RedbCache::open(&folder).unwrap();
        let dropped = SlotKeys::new("dropped");
        cache.invalidate_prefix(dropped.prefix()).await.unwrap();
        // Writes in a row: the later invalidations find nothing stored and
        // do no I/O at all; a crash must still not bring anything back.
        cache.invalidate_prefix(dropped.prefix()).await.unwrap();
        // Fills that never reached a synced commit, dropped without a sync.
        let refilled = SlotKeys::new("refilled");
        for key in slots(&refilled) {
            fill(&cache, &key, slot_for(&key, &key)).await;
        }
        cache.invalidate_prefix(refilled.prefix()).await.unwrap();
        cache.invalidate_prefix(refilled.prefix()).await.unwrap();
        // Fills made durable by a checkpoint, then dropped: that drop must
        // sync.
        let checkpointed = SlotKeys::new("checkpointed");
        let cache = cache.with_checkpoint_interval(std::time::Duration::ZERO);
        for key in slots(&checkpointed) {
            fill(&cache, &key, slot_for(&key, &key)).await;
        }
        cache
            .invalidate_prefix(checkpointed.prefix())
            .await
            .unwrap();
    });
    println!("invalidation acknowledged; aborting");
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_acknowledged_invalidation_survives_a_crash() {
    // "After a crash, a slot dropped by an acknowledged write never comes
    // back": the process dies right after the invalidation returns.
    let dir = tempfile::tempdir().unwrap();
    let dropped = slots(&SlotKeys::new("dropped"));
    let kept = slots(&SlotKeys::new("kept"));
    {
        let cache = RedbCache::open(dir.path()).unwrap();
        for key in dropped.iter().chain(&kept) {
            fill(&cache, key, slot_for(key, key)).await;
        }
    } // closed cleanly: everything so far is durable

    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "redb_crash_child", "--nocapture"])
        .env(CRASH_DIR_VAR, dir.path())
        .output()
        .expect("spawn the crashing child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("invalidation acknowledged; aborting"),
        "the child did not get to its invalidation: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the child was meant to abort");

    let cache = RedbCache::open(dir.path()).expect("open after a crash");
    let gone = dropped
        .iter()
        .chain(&slots(&SlotKeys::new("refilled")))
        .chain(&slots(&SlotKeys::new("checkpointed")))
        .cloned()
        .collect::<Vec<_>>();
    for key in &gone {
        assert!(
            lookup(&cache, key).await.is_none(),
            "{key}: an acknowledged invalidation was lost in the crash"
        );
    }
    for key in &kept {
        let got = lookup(&cache, key).await.expect("durable slot kept");
        assert_same_slot(&slot_for(key, key), &got, key);
    }
}

/// Set by `redb_open_in_another_process_is_already_open` for its child.
const HOLD_DIR_VAR: &str = "VLIVE_TEST_HOLD_DIR";

/// The child process of `redb_open_in_another_process_is_already_open`:
/// holds the cache open until its stdin closes. Does nothing unless that
/// test spawned it.
#[test]
#[ignore = "helper: the child process of redb_open_in_another_process_is_already_open"]
fn redb_hold_open_child() {
    use std::io::{Read, Write};
    let Ok(folder) = std::env::var(HOLD_DIR_VAR) else {
        return;
    };
    let cache = RedbCache::open(&folder).unwrap();
    println!("cache open");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(cache);
}

#[test]
fn redb_open_in_another_process_is_already_open() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "redb_hold_open_child",
            "--nocapture",
        ])
        .env(HOLD_DIR_VAR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child holding the cache");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let opened = lines.any(|line| line.map(|l| l.contains("cache open")).unwrap_or(false));
    assert!(opened, "the child did not open the cache");

    let err = RedbCache::open(dir.path()).expect_err("open while another process holds it");
    assert!(
        matches!(err, OpenCacheError::AlreadyOpen { .. }),
        "expected AlreadyOpen, got {err:?}"
    );
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    drop(child.stdin.take()); // let the child close the cache and exit
    assert!(child.wait().unwrap().success());
    RedbCache::open(dir.path()).expect("open once the other process is gone");
}
