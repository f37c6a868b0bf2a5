use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;
use towline_core::{BoxError, Error, Observer, ReplayBody};

use crate::config::Shared;
use crate::{DefaultPolicy, Policy, ResponseFuture, RetryBudget, RetryLayer};

/// The retry service built by [`RetryLayer`]; see the [crate documentation](crate).
///
/// It takes `http::Request<B>` and sends `http::Request<ReplayBody<B>>` to the service below,
/// which must be `Clone` (each call keeps a clone for its retries, like tower's `Retry`).
/// Clones share the layer's budget and configuration.
pub struct Retry<S, P = DefaultPolicy> {
    inner: S,
    shared: Arc<Shared<P>>,
}

impl<S> Retry<S> {
    /// `inner` with the default retry settings; use [`RetryLayer::builder`] for others.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&RetryLayer::default(), inner)
    }
}

impl<S, P> Retry<S, P> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<P>>) -> Self {
        Retry { inner, shared }
    }

    /// The service below.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service below, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service below, consuming the retry service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The retry budget shared with every clone, if there is one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.config.budget.as_ref()
    }
}

impl<S, P, B, ResBody> Service<Request<B>> for Retry<S, P>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<Error>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
    P: Policy,
{
    type Response = Response<ResBody>;
    type Error = Error;
    type Future = ResponseFuture<S, B, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service that was made ready goes with the call; a clone stays for the next one
        // (tower's idiom, so that a permit taken in `poll_ready` is used by this call).
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let config = &self.shared.config;
        let now = Instant::now();
        if let Some(budget) = &config.budget {
            budget.deposit_at(now);
        }
        // A deadline too far away for the clock to represent is no deadline.
        let deadline = config.deadline.and_then(|d| now.checked_add(d));
        let observer = req.extensions().get::<Observer>().cloned();
        ResponseFuture::start(req, service, self.shared.clone(), now, deadline, observer)
    }
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for Retry<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}
