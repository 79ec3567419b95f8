//! Single flight over a backend shared by several processes: its tickets
//! carry a token (the generation in the shared store), and a read that saw a
//! newer token (another process invalidated) never joins a flight started
//! before it, even though nothing moved in this process. The test plays the
//! master through tower-test's mock; time is paused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tower::{Layer, ServiceExt};
use tower_test::mock;
use vantage_core::Result;
use vantage_live_layers::cache::{Namespace, Peek, Ticket};
use vantage_live_layers::{
    Cache, CacheLayer, CachedRows, CachedSlot, Generations, Request, Response, Rows, View,
};

/// A stand-in for a store shared by processes: misses every lookup and
/// records its "remote" generation in the ticket, as `RedisCache` does.
#[derive(Default)]
struct Shared {
    remote: AtomicU64,
    generations: Generations,
}

#[async_trait]
impl Cache for Shared {
    async fn get(&self, _key: &str) -> Result<Option<CachedRows>> {
        Ok(None)
    }
    async fn put(&self, _key: &str, _rows: CachedRows) -> Result<()> {
        Ok(())
    }
    async fn invalidate_prefix(&self, prefix: &str) -> Result<()> {
        self.generations
            .start_drop(prefix, false)
            .finish::<(), ()>(&Ok(()));
        Ok(())
    }
    fn generations(&self) -> Option<&Generations> {
        Some(&self.generations)
    }
    fn peek(&self, _key: &str, _ns: &Arc<Namespace>) -> Peek {
        Peek::Unknown
    }
    async fn lookup(
        &self,
        _key: &str,
        _ns: &Arc<Namespace>,
        ticket: &mut Ticket,
    ) -> Result<Option<CachedSlot>> {
        ticket.set_token(self.remote.load(Ordering::SeqCst));
        Ok(None)
    }
    async fn fill(&self, _: &str, _: &Arc<Namespace>, _: Ticket, _: CachedSlot) -> Result<bool> {
        Ok(false)
    }
}

async fn no_request(handle: &mut mock::Handle<Request, Response>) -> bool {
    tokio::time::timeout(Duration::from_millis(50), handle.next_request())
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn a_read_that_saw_a_newer_remote_generation_does_not_join_an_older_flight() {
    let backend = Arc::new(Shared::default());
    let (master, mut handle) = mock::pair::<Request, Response>();
    let stack = CacheLayer::new(backend.clone(), "k").layer(master);

    let first = tokio::spawn(stack.clone().oneshot(Request::List(View::new())));
    let (_, reply_first) = handle.next_request().await.expect("the first miss reads");

    // Same remote generation: joins the flight.
    let joined = tokio::spawn(stack.clone().oneshot(Request::List(View::new())));
    assert!(no_request(&mut handle).await, "a concurrent miss coalesces");

    // Another process invalidates: the remote generation moves.
    backend.remote.fetch_add(1, Ordering::SeqCst);
    let later = tokio::spawn(stack.clone().oneshot(Request::List(View::new())));
    let (_, reply_later) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .ok()
        .flatten()
        .expect("a read after the remote invalidation reads the master itself");

    let old: Rows = [("old".to_string(), Default::default())]
        .into_iter()
        .collect();
    let new: Rows = [("new".to_string(), Default::default())]
        .into_iter()
        .collect();
    reply_first.send_response(Response::Rows(Arc::new(old.clone())));
    reply_later.send_response(Response::Rows(Arc::new(new.clone())));
    let rows = |r: Response| r.into_rows().unwrap();
    assert_eq!(rows(first.await.unwrap().unwrap()), old);
    assert_eq!(rows(joined.await.unwrap().unwrap()), old);
    assert_eq!(rows(later.await.unwrap().unwrap()), new);
}
