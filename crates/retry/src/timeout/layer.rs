use std::time::Duration;

use tower_layer::Layer;

use super::Timeout;
use crate::ConfigError;

/// Applies a [`Timeout`] to every attempt; see the [module documentation](super).
///
/// ```
/// use std::time::Duration;
/// use towline_retry::TimeoutLayer;
///
/// let layer = TimeoutLayer::new(Duration::from_secs(30)).unwrap();
/// assert_eq!(layer.timeout(), Duration::from_secs(30));
/// assert_eq!(TimeoutLayer::new(Duration::ZERO).unwrap_err().setting(), "timeout");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer failing attempts that take longer than `timeout`; fails when `timeout` is zero.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be longer than zero"));
        }
        Ok(TimeoutLayer { timeout })
    }

    /// The per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::from_layer(inner, self.timeout)
    }
}
