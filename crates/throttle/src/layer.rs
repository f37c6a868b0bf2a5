use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower_layer::Layer;
use towline_core::{ApiKey, KeyHash};

use crate::config::{PerCall, ThrottleBuilder};
use crate::service::Throttle;
use crate::store::{MemoryStore, Quota, Store, StoreStats};

/// Applies a per-key [`Throttle`] to a service. Every service the layer builds, and every
/// clone of them, shares one set of buckets.
///
/// ```
/// use towline_throttle::ThrottleLayer;
///
/// let layer = ThrottleLayer::builder().rate(5.0).burst(2).build().unwrap();
/// assert_eq!(layer.stats().live_keys, 0);
/// ```
pub struct ThrottleLayer<K = KeyHash, E = ApiKey, F = PerCall, St = MemoryStore<K>> {
    core: Arc<Core<K, St>>,
    extractor: E,
    cost: F,
}

/// The state and settings shared by every clone of the layer and its services.
pub(crate) struct Core<K, St> {
    pub(crate) store: St,
    pub(crate) quota: Option<Quota>,
    pub(crate) overrides: HashMap<K, Quota>,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) reject_only: bool,
    pub(crate) total_wait_ns: AtomicU64,
}

impl<K: Hash + Eq, St> Core<K, St> {
    #[inline]
    pub(crate) fn quota_for(&self, key: Option<&K>) -> Option<Quota> {
        if self.overrides.is_empty() {
            return self.quota;
        }
        key.and_then(|k| self.overrides.get(k).copied())
            .or(self.quota)
    }
}

impl ThrottleLayer {
    /// A builder with the defaults described on [`ThrottleBuilder`].
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder::new()
    }
}

impl<K, E, F, St> ThrottleLayer<K, E, F, St> {
    pub(crate) fn from_parts(core: Arc<Core<K, St>>, extractor: E, cost: F) -> Self {
        ThrottleLayer {
            core,
            extractor,
            cost,
        }
    }

    /// The store holding the buckets (e.g. to read a key's learned rate).
    pub fn store(&self) -> &St {
        &self.core.store
    }

    /// Live keys and waiting calls, e.g. to check that a run left nothing behind.
    pub fn stats(&self) -> StoreStats
    where
        St: Store<K>,
    {
        self.core.store.stats()
    }

    /// The time all calls through this layer spent waiting for their keys, in total.
    pub fn total_wait(&self) -> Duration {
        Duration::from_nanos(self.core.total_wait_ns.load(Ordering::Relaxed))
    }
}

impl<S, K, E: Clone, F: Clone, St> Layer<S> for ThrottleLayer<K, E, F, St> {
    type Service = Throttle<S, K, E, F, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::from_parts(
            inner,
            Arc::clone(&self.core),
            self.extractor.clone(),
            self.cost.clone(),
        )
    }
}

impl<K, E: Clone, F: Clone, St> Clone for ThrottleLayer<K, E, F, St> {
    fn clone(&self) -> Self {
        ThrottleLayer {
            core: Arc::clone(&self.core),
            extractor: self.extractor.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<K, E, F, St: fmt::Debug> fmt::Debug for ThrottleLayer<K, E, F, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayer")
            .field("core", &*self.core)
            .finish()
    }
}

impl<K, St: fmt::Debug> fmt::Debug for Core<K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Per-key quotas are counted, never listed: their keys identify API keys.
        f.debug_struct("Throttle")
            .field("quota", &self.quota)
            .field("key_quotas", &self.overrides.len())
            .field("max_wait", &self.max_wait)
            .field("reject_only", &self.reject_only)
            .field("store", &self.store)
            .finish()
    }
}
