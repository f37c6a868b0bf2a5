use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;
use towline_core::Endpoint;

use crate::config::BreakerBuilder;
use crate::handle::BreakerHandle;
use crate::service::Breaker;
use crate::shared::Shared;

/// Applies a keyed circuit breaker to a service. See the [crate docs](crate).
///
/// The layer owns the circuits: every service it builds, and every clone of those, shares
/// them, so one endpoint's circuit is one circuit however the stack is cloned. Build another
/// layer for independent circuits.
///
/// ```
/// use std::time::Duration;
/// use towline_breaker::BreakerLayer;
///
/// let layer = BreakerLayer::builder()
///     .open_duration(Duration::from_secs(2))
///     .build()?;
/// let handle = layer.handle();
/// assert!(handle.is_empty());
/// # Ok::<(), towline_breaker::ConfigError>(())
/// ```
pub struct BreakerLayer<X = Endpoint> {
    extractor: X,
    shared: Arc<Shared>,
}

impl BreakerLayer {
    /// A layer with the documented defaults, keyed by endpoint (`host:port`).
    pub fn new() -> Self {
        BreakerLayer::builder()
            .build()
            .expect("the default settings are valid")
    }

    /// A builder starting from the documented defaults.
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }
}

impl Default for BreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<X> BreakerLayer<X> {
    pub(crate) fn from_parts(extractor: X, shared: Arc<Shared>) -> Self {
        BreakerLayer { extractor, shared }
    }

    /// A handle to inspect the circuits of this layer and of every service it builds.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.shared))
    }
}

impl<X: Clone> Clone for BreakerLayer<X> {
    fn clone(&self) -> Self {
        BreakerLayer {
            extractor: self.extractor.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, X: Clone> Layer<S> for BreakerLayer<X> {
    type Service = Breaker<S, X>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(inner, self.extractor.clone(), Arc::clone(&self.shared))
    }
}

impl<X: fmt::Debug> fmt::Debug for BreakerLayer<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("extractor", &self.extractor)
            .field("shared", &self.shared)
            .finish()
    }
}
