use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;
use towline_core::Error;

use super::{ResponseFuture, TimeoutLayer};
use crate::ConfigError;

/// Fails a call whose response has not arrived within the timeout; see [`TimeoutLayer`].
///
/// Generic over the request type, so it works over any service whose error converts into
/// [`towline_core::Error`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// `inner` with a `timeout` per call; fails when `timeout` is zero.
    pub fn new(inner: S, timeout: Duration) -> Result<Self, ConfigError> {
        TimeoutLayer::new(timeout).map(|layer| tower_layer::Layer::layer(&layer, inner))
    }

    pub(crate) fn from_layer(inner: S, timeout: Duration) -> Self {
        Timeout { inner, timeout }
    }

    /// The service below.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service below, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service below, consuming the timeout.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Service<R> for Timeout<S>
where
    S: Service<R>,
    S::Error: Into<Error>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness is not timed: waiting for capacity is the layers above's business.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.timeout)
    }
}
