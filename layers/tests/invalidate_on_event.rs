//! InvalidateOnEventLayer on its own: requests pass through untouched, every
//! subscription and every event invalidates once, and the task ends with the
//! last service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tower::{service_fn, Layer, ServiceExt};
use vantage_core::Result;
use vantage_live_layers::{
    Cache, CacheLayer, CachedRows, InvalidateOnEventLayer, LiveEvent, ManualLiveStream,
};

/// Counts invalidations; stores nothing.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl Cache for Counting {
    async fn get(&self, _key: &str) -> Result<Option<CachedRows>> {
        Ok(None)
    }
    async fn put(&self, _key: &str, _rows: CachedRows) -> Result<()> {
        Ok(())
    }
    async fn invalidate_prefix(&self, _prefix: &str) -> Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn passes_through_invalidates_per_event_and_ends_with_the_last_service() {
    let cache = Arc::new(Counting::default());
    let cache_layer = CacheLayer::new(cache.clone(), "k");
    let source = ManualLiveStream::new();
    let layer = InvalidateOnEventLayer::new(Arc::new(source.clone()), cache_layer.invalidator())
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(100));
    let mut status = layer.status();
    assert!(format!("{layer:?}").contains("100ms"));

    // Any request type, any inner service: the layer only passes through.
    let service = layer.layer(service_fn(|n: u32| async move { Ok::<_, ()>(n + 1) }));
    drop(layer);
    assert_eq!(service.clone().oneshot(41).await, Ok(42));

    status.wait_for(|s| s.subscribed).await.unwrap();
    assert_eq!(
        cache.0.load(Ordering::SeqCst),
        1,
        "the subscription invalidates"
    );
    for n in 1..=3 {
        assert_eq!(source.push(LiveEvent::updated(n.to_string())), 1);
    }
    status.wait_for(|s| s.events == 3).await.unwrap();
    assert_eq!(cache.0.load(Ordering::SeqCst), 4, "one per event");

    source.disconnect();
    status.wait_for(|s| s.subscriptions == 2).await.unwrap();
    assert_eq!(
        cache.0.load(Ordering::SeqCst),
        5,
        "and one per re-subscription"
    );

    let inner = service.into_inner();
    assert_eq!(inner.oneshot(1).await, Ok(2));
    status.finished().await;
    assert!(status.current().finished);
    assert_eq!(source.subscriber_count(), 0);
}

#[test]
fn a_layer_built_and_dropped_outside_a_runtime_never_starts() {
    let source = ManualLiveStream::new();
    let cache_layer = CacheLayer::new(Arc::new(Counting::default()), "k");
    let layer = InvalidateOnEventLayer::new(Arc::new(source.clone()), cache_layer.invalidator());
    let service = layer.layer(service_fn(|n: u32| async move { Ok::<_, ()>(n) }));
    let status = layer.status();
    drop((layer, service));
    assert_eq!(status.current().subscriptions, 0);
    assert_eq!(source.subscriber_count(), 0);
}
