//! `MemCache` weighs a slot at (at least) what its rows really take on the
//! heap, so `max_weight` bounds memory and not just an abstract count. A
//! counting allocator measures the bytes a copy of the rows allocates; the
//! weight must cover them without overstating them wildly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ciborium::Value;
use indexmap::IndexMap;
use vantage_live::{Cache, CachedRows, MemCache};
use vantage_types::Record;

/// The system allocator, counting the bytes requested while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) > 0 {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `n` rows of four fields: a name, an integer price, a 40-character note and
/// a flag.
fn rows(n: usize) -> IndexMap<String, Record<Value>> {
    (0..n)
        .map(|i| {
            let mut record = Record::new();
            record.insert("name".to_string(), Value::Text(format!("item {i:06}")));
            record.insert("price".to_string(), Value::Integer((i as i64).into()));
            record.insert("note".to_string(), Value::Text("n".repeat(40)));
            record.insert("flag".to_string(), Value::Bool(i % 2 == 0));
            (format!("i{i:07}"), record)
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_slot_weighs_at_least_what_its_rows_take() {
    for n in [1, 10, 100, 1000] {
        let template = rows(n);
        // What a stored copy of the rows allocates (a fill stores a clone).
        COUNTING.fetch_add(1, Ordering::SeqCst);
        ALLOCATED.store(0, Ordering::SeqCst);
        let copy = template.clone();
        let heap = ALLOCATED.load(Ordering::SeqCst) as u64;
        COUNTING.fetch_sub(1, Ordering::SeqCst);

        let cache = MemCache::new();
        cache.put("k/slot", CachedRows::new(copy)).await.unwrap();
        cache.run_pending_tasks().await;
        let weight = cache.weighted_size();
        assert!(
            weight >= heap,
            "{n} rows: weighed {weight} bytes, but they allocate {heap}"
        );
        assert!(
            weight <= heap * 2 + 1024,
            "{n} rows: weighed {weight} bytes, more than twice the {heap} they allocate"
        );
    }
}
