use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use towline_core::Error;

use crate::future::ResponseFuture;
use crate::telemetry::Shared;

/// Traces each call as one logical client span, with the decisions of the layers below as span
/// events. Built by [`TraceLayer`](crate::TraceLayer).
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Trace<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Trace { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<Error>,
    B: 'static,
    ResB: Body,
    ResB::Error: 'static,
{
    type Response = Response<crate::ResponseBody<ResB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let guard = self.shared.start_call(&mut req);
        ResponseFuture::new(self.inner.call(req), guard)
    }
}

/// Traces each attempt as an HTTP client span, child of its call's span, and injects the trace
/// context into the attempt's headers. Built by [`AttemptLayer`](crate::AttemptLayer).
#[derive(Debug, Clone)]
pub struct TraceAttempt<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> TraceAttempt<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        TraceAttempt { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for TraceAttempt<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<Error>,
    ResB: Body,
    ResB::Error: 'static,
{
    type Response = Response<crate::ResponseBody<ResB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let guard = self.shared.start_attempt(&mut req);
        ResponseFuture::new(self.inner.call(req), guard)
    }
}
