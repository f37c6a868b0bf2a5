use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::config::Shared;
use crate::{DefaultPolicy, Retry, RetryBudget, RetryLayerBuilder};

/// Retries failed LLM calls that can succeed, within a shared budget, never before the
/// provider allows; see the [crate documentation](crate).
///
/// Every service this layer builds, and every clone of them, shares one configuration, one
/// policy and one [`RetryBudget`].
///
/// ```
/// use towline_retry::RetryLayer;
///
/// let layer = RetryLayer::builder().max_retries(2).budget_ratio(0.1).build().unwrap();
/// assert_eq!(layer.budget().map(|b| b.ratio()), Some(0.1));
/// ```
pub struct RetryLayer<P = DefaultPolicy> {
    shared: Arc<Shared<P>>,
}

impl RetryLayer {
    /// A builder with the defaults (3 retries, 20 % + 10/s budget, decorrelated jitter from
    /// 500 ms to 8 s, hints up to 120 s, 1 MiB replay limit, no deadline).
    pub fn builder() -> RetryLayerBuilder {
        RetryLayerBuilder::new()
    }
}

impl<P> RetryLayer<P> {
    pub(crate) fn from_shared(shared: Arc<Shared<P>>) -> Self {
        RetryLayer { shared }
    }

    /// The retry budget shared by every service of this layer, if there is one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.config.budget.as_ref()
    }
}

impl Default for RetryLayer {
    /// The layer with every default; see [`RetryLayer::builder`].
    fn default() -> Self {
        RetryLayer::builder()
            .build()
            .expect("the defaults are valid")
    }
}

impl<P> Clone for RetryLayer<P> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<P> fmt::Debug for RetryLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, P> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_shared(inner, self.shared.clone())
    }
}
