//! The per-layer overhead table's stacks: each of the four layers alone over
//! [`InstantService`], the four assembled in the default stack's order, and a
//! `LiveTable` over that assembly, all answering from the same fixed rows.
//!
//! The stacks are driven as tower's callers drive them (`ready().await`, then
//! `call`, on one long-lived handle), except the `LiveTable`, which is driven
//! through its own methods (`list_shared`, `insert_value`), clones and all.

use std::sync::Arc;

use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use vantage_dataset::prelude::WritableValueSet;
use vantage_live::vantage_live_layers::bench::InstantService;
use vantage_live::vantage_live_layers::{CacheService, InvalidateOnEvent, Tracing, WriteQueue};
use vantage_live::{
    CacheLayer, InvalidateOnEventLayer, LiveTable, ManualLiveStream, MemCache, Request,
    TracingLayer, View, WriteQueueLayer, WriteRequest,
};
use vantage_table::any::AnyTable;

use super::{row, CACHE_KEY};

/// The default stack's order, over the instant service.
pub type Assembled = Tracing<InvalidateOnEvent<WriteQueue<CacheService<InstantService>>>>;

/// The stacks of one row count.
pub struct PerLayer {
    /// The baseline.
    pub instant: InstantService,
    /// `CacheLayer` over `MemCache`.
    pub cache: CacheService<InstantService>,
    /// `WriteQueueLayer`.
    pub queue: WriteQueue<InstantService>,
    /// `InvalidateOnEventLayer` on a `ManualLiveStream`.
    pub events: InvalidateOnEvent<InstantService>,
    /// `TracingLayer`.
    pub tracing: Tracing<InstantService>,
    /// All four.
    pub assembled: Assembled,
    /// A `LiveTable` over the assembly (the master only supplies metadata).
    pub live: LiveTable<Assembled>,
    /// Keeps the event layers' streams alive.
    _streams: Vec<ManualLiveStream>,
}

/// The layer names, in the table's order.
pub const LAYERS: [&str; 4] = [
    "CacheLayer (MemCache)",
    "WriteQueueLayer",
    "InvalidateOnEventLayer",
    "TracingLayer",
];

impl PerLayer {
    /// Stacks answering `rows` rows; `metadata` is any table (the
    /// `LiveTable`'s columns and id field come from it). Call inside a
    /// runtime. Every cached stack has its slot filled.
    pub async fn new(rows: usize, metadata: &AnyTable) -> PerLayer {
        let instant = InstantService::with_rows(rows);
        let streams = vec![ManualLiveStream::new(), ManualLiveStream::new()];
        let alone = CacheLayer::new(Arc::new(MemCache::new()), CACHE_KEY);
        let cache = alone.layer(instant.clone());
        let queue = WriteQueueLayer::new().layer(instant.clone());
        // The event layer alone invalidates a cache no stack here reads.
        let elsewhere = CacheLayer::new(Arc::new(MemCache::new()), "elsewhere");
        let events =
            InvalidateOnEventLayer::new(Arc::new(streams[0].clone()), elsewhere.invalidator())
                .layer(instant.clone());
        let tracing = TracingLayer::new(CACHE_KEY).layer(instant.clone());

        let cache_layer = CacheLayer::new(Arc::new(MemCache::new()), CACHE_KEY);
        let assembled_events =
            InvalidateOnEventLayer::new(Arc::new(streams[1].clone()), cache_layer.invalidator());
        let assembled = ServiceBuilder::new()
            .layer(TracingLayer::new(CACHE_KEY))
            .layer(assembled_events.clone())
            .layer(WriteQueueLayer::new())
            .layer(cache_layer.clone())
            .service(instant.clone());
        let live = LiveTable::from_service(metadata.clone(), assembled.clone())
            .with_cache_layer(&cache_layer);

        let mut stacks = PerLayer {
            instant,
            cache,
            queue,
            events,
            tracing,
            assembled,
            live,
            _streams: streams,
        };
        // Start the tasks (the first request does), let the assembled
        // stack's event task subscribe (which drops its cache_key once),
        // then fill the slots every hit reads.
        call(&mut stacks.events, read()).await;
        call(&mut stacks.queue, write()).await;
        call(&mut stacks.assembled, read()).await;
        assembled_events
            .status()
            .wait_for(|s| s.subscriptions >= 1)
            .await
            .expect("the event task runs");
        call(&mut stacks.cache, read()).await;
        call(&mut stacks.assembled, read()).await;
        stacks.live.list_shared().await.expect("LiveTable read");
        stacks
    }
}

/// The request of the hit path: the plain view's page.
pub fn read() -> Request {
    Request::List(View::new())
}

/// The request of the write path: one insert of a two-field row.
pub fn write() -> Request {
    Request::Write(WriteRequest::Insert {
        id: "w".to_string(),
        record: row(0),
    })
}

/// One call as tower's callers make it; panics on an error (a benchmark
/// over the instant service has none).
pub async fn call<S>(service: &mut S, request: Request)
where
    S: Service<Request>,
    S::Error: std::fmt::Debug,
{
    let response = service.ready().await.expect("ready");
    response.call(request).await.expect("answered");
}

/// One write through the `LiveTable`.
pub async fn live_write(live: &LiveTable<Assembled>) {
    live.insert_value(&"w".to_string(), &row(0))
        .await
        .expect("written");
}
