//! A layer that may be switched off at run time without changing the stack's type.
//!
//! tower's `option_layer` yields `Either<A, B>`, which needs both sides to answer the same
//! response type. towline's layers wrap the response body (the session slot, the span, the
//! stream scanner travel in it), so a stack with a layer and the same stack without it answer
//! different bodies. [`Toggle`] unifies them with [`EitherBody`], so the preset can make every
//! layer optional and still return one type, with no boxing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use towline_core::Error;

/// A layer that is applied when it is `Some`, and passes requests straight through when it is
/// `None`.
///
/// ```
/// use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
/// use towline::toggle::Toggle;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let inner = service_fn(|_req: http::Request<()>| async {
///     Ok::<_, towline::Error>(http::Response::new(String::from("ok")))
/// });
/// let layer: Toggle<towline::normalize::NormalizeLayer> = Toggle::off();
/// let response = layer.layer(inner).oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Toggle<L>(Option<L>);

impl<L> Toggle<L> {
    /// The layer, switched on.
    pub fn on(layer: L) -> Self {
        Toggle(Some(layer))
    }

    /// No layer: requests pass straight through.
    pub fn off() -> Self {
        Toggle(None)
    }

    /// `layer` when it is `Some`.
    pub fn new(layer: Option<L>) -> Self {
        Toggle(layer)
    }

    /// Whether the layer is switched on.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }
}

impl<L, S> Layer<S> for Toggle<L>
where
    L: Layer<S>,
{
    type Service = Toggled<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => Toggled::On(layer.layer(inner)),
            None => Toggled::Off(inner),
        }
    }
}

/// The service of a [`Toggle`]: the layer's service, or the inner service itself.
#[derive(Debug, Clone)]
pub enum Toggled<A, B> {
    /// The layer is on.
    On(A),
    /// The layer is off.
    Off(B),
}

impl<A, B, Req, AB, BB> Service<Req> for Toggled<A, B>
where
    A: Service<Req, Response = http::Response<AB>>,
    A::Error: Into<Error>,
    B: Service<Req, Response = http::Response<BB>>,
    B::Error: Into<Error>,
{
    type Response = http::Response<EitherBody<AB, BB>>;
    type Error = Error;
    type Future = ToggledFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self {
            Toggled::On(a) => a.poll_ready(cx).map_err(Into::into),
            Toggled::Off(b) => b.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Toggled::On(a) => ToggledFuture::On {
                future: a.call(request),
            },
            Toggled::Off(b) => ToggledFuture::Off {
                future: b.call(request),
            },
        }
    }
}

pin_project! {
    /// The future of a [`Toggled`] service.
    #[project = ToggledFutureProj]
    #[allow(missing_docs)]
    pub enum ToggledFuture<FA, FB> {
        On { #[pin] future: FA },
        Off { #[pin] future: FB },
    }
}

impl<FA, FB> fmt::Debug for ToggledFuture<FA, FB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToggledFuture::On { .. } => f.write_str("ToggledFuture::On"),
            ToggledFuture::Off { .. } => f.write_str("ToggledFuture::Off"),
        }
    }
}

impl<FA, FB, AB, BB, EA, EB> Future for ToggledFuture<FA, FB>
where
    FA: Future<Output = Result<http::Response<AB>, EA>>,
    FB: Future<Output = Result<http::Response<BB>, EB>>,
    EA: Into<Error>,
    EB: Into<Error>,
{
    type Output = Result<http::Response<EitherBody<AB, BB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ToggledFutureProj::On { future } => future
                .poll(cx)
                .map(|r| r.map(|res| res.map(EitherBody::left)).map_err(Into::into)),
            ToggledFutureProj::Off { future } => future
                .poll(cx)
                .map(|r| r.map(|res| res.map(EitherBody::right)).map_err(Into::into)),
        }
    }
}

pin_project! {
    /// One of two bodies, with towline's error type (http-body-util's `Either` boxes errors).
    ///
    /// ```
    /// use http_body::Body;
    /// use towline::toggle::EitherBody;
    ///
    /// let body: EitherBody<String, String> = EitherBody::left(String::from("abc"));
    /// assert_eq!(body.size_hint().exact(), Some(3));
    /// ```
    pub struct EitherBody<L, R> {
        #[pin]
        inner: Either<L, R>,
    }
}

pin_project! {
    #[project = EitherProj]
    enum Either<L, R> {
        Left { #[pin] body: L },
        Right { #[pin] body: R },
    }
}

impl<L, R> EitherBody<L, R> {
    /// The first kind of body.
    pub fn left(body: L) -> Self {
        EitherBody {
            inner: Either::Left { body },
        }
    }

    /// The second kind of body.
    pub fn right(body: R) -> Self {
        EitherBody {
            inner: Either::Right { body },
        }
    }
}

impl<L, R> fmt::Debug for EitherBody<L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner {
            Either::Left { .. } => f.write_str("EitherBody::Left"),
            Either::Right { .. } => f.write_str("EitherBody::Right"),
        }
    }
}

impl<L, R> Body for EitherBody<L, R>
where
    L: Body<Data = Bytes>,
    L::Error: Into<Error>,
    R: Body<Data = Bytes>,
    R::Error: Into<Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.project().inner.project() {
            EitherProj::Left { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            EitherProj::Right { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Either::Left { body } => body.is_end_stream(),
            Either::Right { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Either::Left { body } => body.size_hint(),
            Either::Right { body } => body.size_hint(),
        }
    }
}
