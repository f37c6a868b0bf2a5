use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use towline_core::{ApiKey, BoxError, Error};

use crate::config::Config;
use crate::scrub::Credential;
use crate::{NormalizeBody, NormalizeLayer, ResponseFuture};

/// Turns a client's answers into successes and typed errors; see the [crate docs](crate).
///
/// - A 2xx answer is returned untouched (no buffering), with its
///   [`RateLimitSnapshot`](towline_core::RateLimitSnapshot) in the response extensions when the
///   provider sent rate-limit headers. `text/event-stream` bodies are scanned for in-band
///   errors ([`NormalizeBody`]).
/// - Any other status becomes `Err(Error::Api(..))`, classified from the status, the headers
///   and the first [`error_body_limit`](crate::Builder::error_body_limit) bytes of the body.
/// - A failure of the client becomes [`Error::Transport`], unless it already is a towline
///   [`Error`] (from a layer below), which is passed on unchanged.
///
/// Cloning shares nothing but the (copied) settings: the layer has no state.
#[derive(Debug, Clone)]
pub struct Normalize<S> {
    inner: S,
    config: Config,
}

impl<S> Normalize<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        Normalize::with_config(inner, Config::default())
    }

    pub(crate) fn with_config(inner: S, config: Config) -> Self {
        Normalize { inner, config }
    }

    /// A layer with the default settings.
    pub fn layer() -> NormalizeLayer {
        NormalizeLayer::new()
    }

    /// The wrapped client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the client.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Normalize<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Response = Response<NormalizeBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(into_error)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Only a digest of the key is kept, to find echoes of it in an error message.
        let credential = ApiKey::credential(req.headers()).and_then(Credential::of);
        ResponseFuture::new(self.inner.call(req), self.config, credential)
    }
}

/// A client's error as a towline [`Error`]: itself if it already is one, else `Transport`.
pub(crate) fn into_error(err: impl Into<BoxError>) -> Error {
    match err.into().downcast::<Error>() {
        Ok(err) => *err,
        Err(other) => Error::Transport(other),
    }
}
