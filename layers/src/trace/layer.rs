use std::sync::Arc;

use tower::Layer;

use super::service::Tracing;

/// Opens a span per request and logs what the caller sees. See the
/// [module docs](super) for the spans and events.
#[derive(Clone, Debug)]
pub struct TracingLayer {
    cache_key: Arc<str>,
}

impl TracingLayer {
    /// Trace requests of the stack caching under `cache_key` (the field every
    /// span and event carries).
    pub fn new(cache_key: impl Into<String>) -> Self {
        Self {
            cache_key: Arc::from(cache_key.into()),
        }
    }

    /// The cache_key spans are tagged with.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }
}

impl<S> Layer<S> for TracingLayer {
    type Service = Tracing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracing::new(inner, self.cache_key.clone())
    }
}
