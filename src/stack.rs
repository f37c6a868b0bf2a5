//! The default stack: every towline layer, in the order of the architecture, over any client.
//!
//! ```text
//! trace → session → retry → throttle → breaker → attempt span → timeout → normalize → client
//! ```
//!
//! - **trace** is outermost so its span covers the session wait and every retry;
//! - **session** sits above retry so the conversation's slot covers every retry of a turn: no
//!   other turn slips in between attempts;
//! - **retry** sits above throttle and breaker so every attempt pays its key's token and passes
//!   the breaker, and a retry never leaves before the provider's hint;
//! - **attempt span** right above the timeout gives one HTTP span per attempt actually sent;
//! - **normalize** is innermost so every layer above reads one error type.
//!
//! Every layer is on by default with its documented defaults, and each can be replaced by a
//! configured one or switched off. Layers keep their state behind `Arc`s: build the stack once
//! and clone the service; every clone shares budgets, buckets, breakers and sessions.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::{Layer, Service, ServiceBuilder};
use towline_breaker::BreakerLayer;
use towline_core::{BoxError, Error, ReplayBody};
use towline_normalize::NormalizeLayer;
use towline_retry::{RetryLayer, TimeoutLayer};
use towline_session::SessionLayer;
use towline_throttle::ThrottleLayer;
use towline_trace::TraceLayer;

use crate::toggle::{Toggle, Toggled};

/// The per-attempt timeout of [`Stack::new`]: generous, because a reasoning model may think for
/// a minute before its first token, and the Normalize layer waits for the first SSE event.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The default towline stack, configurable layer by layer.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::{ServiceExt, service_fn};
/// use towline::{ReplayBody, Stack};
/// use towline::retry::RetryLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Any client: a hyper-util `Client<_, ReplayBody<Full<Bytes>>>`, reqwest through
/// // `towline::reqwest::ReqwestService`, or a `service_fn` as here.
/// let client = service_fn(|_req: http::Request<ReplayBody<Full<Bytes>>>| async {
///     Ok::<_, towline::Error>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
/// });
/// let service = Stack::new()
///     .retry(RetryLayer::builder().max_retries(2).build()?)
///     .attempt_timeout(Duration::from_secs(30))?
///     .without_session()
///     .service(client);
///
/// let request = http::Request::post("https://api.moonshot.ai/v1/chat/completions")
///     .header("authorization", "Bearer sk-...")
///     .body(Full::new(Bytes::from_static(br#"{"model":"kimi-k2-0711-preview","messages":[]}"#)))?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Stack {
    trace: Option<TraceLayer>,
    session: Option<SessionLayer>,
    retry: Option<RetryLayer>,
    throttle: Option<ThrottleLayer>,
    breaker: Option<BreakerLayer>,
    timeout: Option<TimeoutLayer>,
    normalize: NormalizeLayer,
}

impl Stack {
    /// Every layer on, with its defaults: tracing to the global OpenTelemetry providers,
    /// sessions by `x-session-id`, 3 retries within a 20 % budget, a throttle per API key that
    /// learns each key's rate from the provider, a breaker per endpoint, a 120 s attempt
    /// timeout, and every provider dialect normalized.
    pub fn new() -> Self {
        Stack {
            trace: Some(TraceLayer::new()),
            session: Some(SessionLayer::new()),
            retry: Some(RetryLayer::default()),
            throttle: Some(
                ThrottleLayer::builder()
                    .build()
                    .expect("the throttle's defaults are valid"),
            ),
            breaker: Some(BreakerLayer::new()),
            timeout: Some(
                TimeoutLayer::new(DEFAULT_ATTEMPT_TIMEOUT).expect("the default timeout is valid"),
            ),
            normalize: NormalizeLayer::new(),
        }
    }

    /// Uses `layer` for tracing and metrics.
    ///
    /// The default layer records metrics through OpenTelemetry's global meter provider, which
    /// the API cannot tell apart from its no-op: a process without an SDK still pays for
    /// describing every call (see `benches/RESULTS.md`: most of what the default stack costs
    /// over the bare client). Metrics stay on by default because the usual set-up installs the
    /// global provider at start-up; a service that exports no metrics turns them off:
    ///
    /// ```
    /// use towline::{Stack, trace::TraceLayer};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let stack = Stack::new().trace(TraceLayer::builder().metrics(false).build()?);
    /// # let _ = stack; Ok(()) }
    /// ```
    pub fn trace(mut self, layer: TraceLayer) -> Self {
        self.trace = Some(layer);
        self
    }

    /// No tracing layer.
    pub fn without_trace(mut self) -> Self {
        self.trace = None;
        self
    }

    /// Uses `layer` for per-session serialization.
    pub fn session(mut self, layer: SessionLayer) -> Self {
        self.session = Some(layer);
        self
    }

    /// No session layer: turns of one conversation may overlap.
    pub fn without_session(mut self) -> Self {
        self.session = None;
        self
    }

    /// Uses `layer` for retries.
    pub fn retry(mut self, layer: RetryLayer) -> Self {
        self.retry = Some(layer);
        self
    }

    /// No retries: each call is sent once.
    pub fn without_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Uses `layer` as the per-key throttle.
    pub fn throttle(mut self, layer: ThrottleLayer) -> Self {
        self.throttle = Some(layer);
        self
    }

    /// No throttle: provider hints are then only honoured by the retry layer.
    pub fn without_throttle(mut self) -> Self {
        self.throttle = None;
        self
    }

    /// Uses `layer` as the circuit breaker.
    pub fn breaker(mut self, layer: BreakerLayer) -> Self {
        self.breaker = Some(layer);
        self
    }

    /// No circuit breaker.
    pub fn without_breaker(mut self) -> Self {
        self.breaker = None;
        self
    }

    /// Bounds each attempt (up to the response head, or the first SSE event) by `timeout`.
    ///
    /// # Errors
    ///
    /// A zero timeout.
    pub fn attempt_timeout(
        mut self,
        timeout: Duration,
    ) -> Result<Self, towline_retry::ConfigError> {
        self.timeout = Some(TimeoutLayer::new(timeout)?);
        Ok(self)
    }

    /// No per-attempt timeout (the client's own, if any, still applies).
    pub fn without_attempt_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Uses `layer` to normalize the provider's answers. Normalize cannot be switched off:
    /// every other layer reads its errors.
    pub fn normalize(mut self, layer: NormalizeLayer) -> Self {
        self.normalize = layer;
        self
    }

    /// The stack as one tower layer, to put over a client with `ServiceBuilder` or
    /// [`Layer::layer`].
    pub fn into_layer(self) -> StackLayer {
        StackLayer { stack: self }
    }

    /// The stack over `client`.
    ///
    /// The client receives `http::Request<ReplayBody<B>>` (the retry layer replays the
    /// body); every error it or the provider returns comes out as a towline [`Error`].
    pub fn service<C>(self, client: C) -> <StackLayer as Layer<C>>::Service {
        self.into_layer().layer(client)
    }
}

impl Default for Stack {
    fn default() -> Self {
        Stack::new()
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("trace", &self.trace.is_some())
            .field("session", &self.session.is_some())
            .field("retry", &self.retry.is_some())
            .field("throttle", &self.throttle.is_some())
            .field("breaker", &self.breaker.is_some())
            .field("timeout", &self.timeout.is_some())
            .finish_non_exhaustive()
    }
}

/// [`Stack`] as a tower [`Layer`].
#[derive(Debug, Clone)]
pub struct StackLayer {
    stack: Stack,
}

/// The service type of the stack over a client `C`.
pub type StackService<C> = Toggled<towline_trace::Trace<Sessioned<C>>, Sessioned<C>>;

/// Session → retry → … → client.
pub type Sessioned<C> = Toggled<towline_session::Session<Retried<C>>, Retried<C>>;

/// Retry → … → client.
pub type Retried<C> = Toggled<towline_retry::Retry<Lower<C>>, SendOnce<Lower<C>>>;

/// Throttle → breaker → attempt span → timeout → normalize → client.
pub type Lower<C> = Toggled<towline_throttle::Throttle<Breakered<C>>, Breakered<C>>;

/// Breaker → attempt span → timeout → normalize → client.
pub type Breakered<C> = Toggled<towline_breaker::Breaker<Attempted<C>>, Attempted<C>>;

/// Attempt span → timeout → normalize → client.
pub type Attempted<C> = Toggled<towline_trace::TraceAttempt<Timed<C>>, Timed<C>>;

/// Timeout → normalize → client.
pub type Timed<C> = Toggled<
    towline_retry::Timeout<towline_normalize::Normalize<C>>,
    towline_normalize::Normalize<C>,
>;

impl<C> Layer<C> for StackLayer {
    type Service = StackService<C>;

    fn layer(&self, client: C) -> Self::Service {
        let s = &self.stack;
        let attempt = s.trace.as_ref().map(TraceLayer::attempt_layer);
        let lower = ServiceBuilder::new()
            .layer(Toggle::new(s.throttle.clone()))
            .layer(Toggle::new(s.breaker.clone()))
            .layer(Toggle::new(attempt))
            .layer(Toggle::new(s.timeout))
            .layer(s.normalize.clone())
            .service(client);
        let retried = match &s.retry {
            Some(retry) => Toggled::On(retry.layer(lower)),
            None => Toggled::Off(SendOnce { inner: lower }),
        };
        ServiceBuilder::new()
            .layer(Toggle::new(s.trace.clone()))
            .layer(Toggle::new(s.session.clone()))
            .service(retried)
    }
}

/// What stands in for the retry layer when it is off: sends each request once, its body
/// wrapped as the [`ReplayBody`] the layers below expect (no copy, no buffering).
#[derive(Debug, Clone)]
pub struct SendOnce<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for SendOnce<S>
where
    S: Service<Request<ReplayBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> S::Future {
        self.inner.call(
            request.map(|body| ReplayBody::streaming(std::collections::VecDeque::new(), body)),
        )
    }
}

// Compile-time check that the stack is a `Service` over a typical client, with a `Send`
// future: a regression in any layer's bounds fails here, not in a user's build.
#[allow(dead_code)]
fn assert_stack_is_a_send_service<C, B, CB>(client: C)
where
    C: Service<Request<ReplayBody<B>>, Response = Response<CB>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
    CB: Body<Data = Bytes> + Send + 'static,
    CB::Error: Into<BoxError>,
{
    fn is_service<S, R>(_: &S)
    where
        S: Service<R, Error = Error> + Clone + Send,
        S::Future: Send,
    {
    }
    let service = Stack::new().service(client);
    is_service::<_, Request<B>>(&service);
}
