//! The state shared by every clone of both layers, and what happens at the start and end of a
//! call and of an attempt.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};
use smallvec::SmallVec;
use tokio::time::Instant;
use towline_core::{BoxError, Error, ErrorKind, Event, Observer};

use crate::describe::{self, CallInfo, Endpoints, Models, Push};
use crate::metrics::Instruments;
use crate::names::*;
use crate::peek;

/// The attributes of one metric point: at most seven, so they stay on the stack (a `Vec` per
/// point was a third of the allocations of a call with metrics on).
pub(crate) type MetricAttrs = SmallVec<[KeyValue; 8]>;

/// Where the `tracing` log lines of this crate go.
pub(crate) const LOG_TARGET: &str = "towline::trace";

/// A function giving the parent context of a call's span.
pub(crate) type ParentFn = Arc<dyn Fn() -> Context + Send + Sync>;

// What the first span of the configured tracer showed: whether it records anything at all.
pub(crate) const TRACER_UNKNOWN: u8 = 0;
const TRACER_LIVE: u8 = 1;
const TRACER_NOOP: u8 = 2;

/// Configuration and instruments shared by every clone of the call and attempt layers.
pub(crate) struct Shared {
    pub(crate) tracer: BoxedTracer,
    /// `TRACER_*`: once the tracer is known to be a no-op (no SDK installed), no span is built.
    pub(crate) tracer_state: AtomicU8,
    pub(crate) propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    pub(crate) instruments: Option<Instruments>,
    /// The configured provider name and the endpoints already described.
    pub(crate) endpoints: Endpoints,
    /// Shared copies of the model names seen.
    pub(crate) models: Models,
    pub(crate) model_header: Option<HeaderName>,
    pub(crate) body_peek_limit: usize,
    pub(crate) kept_query: Vec<Cow<'static, str>>,
    pub(crate) parent: Option<ParentFn>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("metrics", &self.instruments.is_some())
            .field("provider", &self.endpoints.provider())
            .field("model_header", &self.model_header)
            .field("body_peek_limit", &self.body_peek_limit)
            .field("kept_query", &self.kept_query)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Whether spans are worth building: false once the tracer proved to be a no-op.
    #[inline]
    fn tracing(&self) -> bool {
        self.tracer_state.load(Ordering::Relaxed) != TRACER_NOOP
    }

    /// Learns from the first span whether the tracer is a no-op: the API's no-op tracer (no SDK
    /// installed) returns a non-recording span carrying its parent's context, while an SDK always
    /// gives a new span id, sampled or not. The tracer is fixed when the layer is built, so one
    /// look is enough.
    fn learn(&self, parent: &Context, span: &BoxedSpan) {
        if self.tracer_state.load(Ordering::Relaxed) != TRACER_UNKNOWN
            || parent.is_telemetry_suppressed()
        {
            return;
        }
        let sc = span.span_context();
        let noop = !span.is_recording() && (!sc.is_valid() || sc == parent.span().span_context());
        let state = if noop { TRACER_NOOP } else { TRACER_LIVE };
        self.tracer_state.store(state, Ordering::Relaxed);
    }

    fn start_span(
        &self,
        name: Cow<'static, str>,
        attrs: Vec<KeyValue>,
        parent: &Context,
    ) -> Context {
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs);
        let span = self.tracer.build_with_context(builder, parent);
        self.learn(parent, &span);
        parent.with_span(span)
    }

    fn parent_of(&self, extensions: &http::Extensions) -> Context {
        if let Some(cx) = extensions.get::<Context>() {
            return cx.clone();
        }
        match &self.parent {
            Some(parent) => parent(),
            None => Context::current(),
        }
    }

    /// Injects the context `cx()` into `headers` with the configured or global propagator.
    /// The context is only made when the propagator has fields to set: the API's default
    /// propagator (no SDK) has none, and then an attempt costs one read lock here.
    fn inject(&self, cx: impl FnOnce() -> Context, headers: &mut HeaderMap) {
        let mut injector = HeaderInjector(headers);
        let mut cx = Some(cx);
        let mut run = |propagator: &dyn TextMapPropagator| {
            if propagator.fields().next().is_none() {
                return;
            }
            if let Some(cx) = cx.take() {
                propagator.inject_context(&cx(), &mut injector);
            }
        };
        match &self.propagator {
            Some(propagator) => run(propagator.as_ref()),
            None => global::get_text_map_propagator(run),
        }
    }

    // ---- calls ---------------------------------------------------------------------------

    /// Starts the logical span of a call and puts what the layers below need in its
    /// extensions. `None` when nothing listens (no-op tracer, no metrics, no debug log).
    pub(crate) fn start_call<B: 'static>(
        self: &Arc<Self>,
        req: &mut Request<B>,
    ) -> Option<Box<Guard>> {
        let tracing = self.tracing();
        if !tracing
            && self.instruments.is_none()
            && !tracing::enabled!(target: LOG_TARGET, tracing::Level::DEBUG)
        {
            return None;
        }
        let start = Instant::now();
        let mut info = describe::call_info(req, &self.endpoints);
        self.read_model(req, &mut info, tracing);
        let parent = self.parent_of(req.extensions());
        let (cx, live) = if tracing {
            let cx = self.start_span(info.span_name(), self.call_attributes(req, &info), &parent);
            let live = cx.span().is_recording();
            req.extensions_mut().insert(cx.clone());
            (cx, live)
        } else {
            (parent, false)
        };
        let state = Arc::new(CallState {
            shared: self.clone(),
            cx,
            live,
            info,
            attempts: AtomicU32::new(0),
        });
        req.extensions_mut().insert(CallScope(state.clone()));
        let ours = {
            let state = state.clone();
            Observer::new(move |event| state.on_event(event))
        };
        let observer = match req.extensions_mut().remove::<Observer>() {
            Some(theirs) => theirs.chain(ours),
            None => ours,
        };
        req.extensions_mut().insert(observer);
        Some(Box::new(Guard::new(Target::Call(state), start)))
    }

    fn call_attributes<B>(&self, req: &Request<B>, info: &CallInfo) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(10);
        info.gen_ai_attributes(&mut attrs);
        if info.stream == Some(true) {
            attrs.push(KeyValue::new(GEN_AI_REQUEST_STREAM, true));
        }
        describe::method_attributes(req.method(), &mut attrs);
        info.server_attributes(&mut attrs);
        if let Some(url) = describe::redacted_url(req.uri(), &self.kept_query) {
            attrs.push(KeyValue::new(URL_FULL, url));
        }
        attrs
    }

    /// Fills the model (extension, header, path, body in that order) and, for a span, the
    /// stream flag (only spans record it).
    fn read_model<B: 'static>(&self, req: &Request<B>, info: &mut CallInfo, tracing: bool) {
        let from_extension = req.extensions().get::<RequestModel>().map(|m| m.0.clone());
        let from_header = || {
            let value = req
                .headers()
                .get(self.model_header.as_ref()?)?
                .to_str()
                .ok()?;
            peek::is_model_name(value).then(|| self.models.intern(value))
        };
        let from_path = || describe::path_model(req.uri().path()).map(|m| self.models.intern(m));
        let mut model = from_extension.or_else(from_header).or_else(from_path);
        if self.body_peek_limit > 0 && (tracing || model.is_none()) {
            with_buffered(req.body(), |bytes| {
                if !tracing {
                    let found = peek::peek_model(bytes, self.body_peek_limit);
                    model = found.map(|m| self.models.intern(m));
                    return;
                }
                let found = peek::peek(bytes, self.body_peek_limit);
                if model.is_none() {
                    model = found.model.map(|m| self.models.intern(m));
                }
                if info.stream.is_none() {
                    info.stream = found.stream;
                }
            });
        }
        info.model = model;
    }

    // ---- attempts ------------------------------------------------------------------------

    /// Starts an attempt's span, injects the trace context into its headers, and returns what
    /// ends it. `None` when nothing listens.
    pub(crate) fn start_attempt<B>(self: &Arc<Self>, req: &mut Request<B>) -> Option<Box<Guard>> {
        let scope = req.extensions().get::<CallScope>().map(|s| s.0.clone());
        let resend_count = scope
            .as_ref()
            .map(|s| s.attempts.fetch_add(1, Ordering::Relaxed))
            .filter(|n| *n > 0);
        let parent = |req: &Request<B>| match &scope {
            Some(scope) => scope.cx.clone(),
            None => self.parent_of(req.extensions()),
        };
        let tracing = self.tracing();
        if !tracing && self.instruments.is_none() {
            // `HeaderMap::new` does not allocate; taking the headers out lets the context be
            // read from the extensions only if the propagator wants it.
            let mut headers = std::mem::take(req.headers_mut());
            self.inject(|| parent(req), &mut headers);
            *req.headers_mut() = headers;
            return None;
        }
        let start = Instant::now();
        let parent = parent(req);
        let server = match &scope {
            Some(scope) => scope.info.server.clone(),
            None => (self.endpoints.of(req.uri(), req.headers())).map(|e| e.server),
        };
        let method = describe::method_value(req.method());
        let (cx, live) = if tracing {
            let mut attrs = Vec::with_capacity(6);
            describe::method_attributes(req.method(), &mut attrs);
            describe::server_attributes(server.as_ref(), &mut attrs);
            if let Some(url) = describe::redacted_url(req.uri(), &self.kept_query) {
                attrs.push(KeyValue::new(URL_FULL, url));
            }
            if let Some(n) = resend_count {
                attrs.push(KeyValue::new(HTTP_REQUEST_RESEND_COUNT, i64::from(n)));
            }
            let cx = self.start_span(method.into(), attrs, &parent);
            let live = cx.span().is_recording();
            req.extensions_mut().insert(cx.clone());
            (cx, live)
        } else {
            (parent, false)
        };
        self.inject(|| cx.clone(), req.headers_mut());
        let attempt = AttemptState {
            shared: self.clone(),
            cx,
            live,
            method,
            server,
        };
        Some(Box::new(Guard::new(Target::Attempt(attempt), start)))
    }
}

/// Sets headers from a propagator, silently skipping what is not a valid header.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Runs `f` on the bytes of a body that is already in memory (`Full<Bytes>`, `String`),
/// without copying them. Other bodies are not read: peeking must never consume a stream.
fn with_buffered<B: 'static>(body: &B, f: impl FnOnce(&[u8])) {
    let any = body as &dyn Any;
    if let Some(full) = any.downcast_ref::<Full<Bytes>>() {
        // `Full` hands its bytes out in one ready frame; a clone shares them.
        let mut full = full.clone();
        let mut cx = std::task::Context::from_waker(Waker::noop());
        if let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut full).poll_frame(&mut cx)
            && let Ok(data) = frame.into_data()
        {
            f(&data);
        }
    } else if let Some(text) = any.downcast_ref::<String>() {
        f(text.as_bytes());
    }
}

/// The model a request asks for, when the caller knows it better than towline can guess it
/// (a streamed body, a body type towline cannot read). Put it in the request's extensions.
///
/// ```
/// use towline_trace::RequestModel;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RequestModel::new("kimi-k2-0905-preview"));
/// assert_eq!(req.extensions().get::<RequestModel>().unwrap().as_str(), "kimi-k2-0905-preview");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestModel(Arc<str>);

impl RequestModel {
    /// The model named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        RequestModel(name.into())
    }

    /// The model's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the call layer leaves in a request's extensions for the attempt layer: the call's span
/// context, its description and its attempt counter. Every attempt's request is a clone of the
/// call's, so they all share it.
#[derive(Clone)]
pub(crate) struct CallScope(Arc<CallState>);

/// One call, shared by its guard, its observer and its attempts.
pub(crate) struct CallState {
    shared: Arc<Shared>,
    /// The call's span (or its parent's context when no span was built).
    cx: Context,
    /// Whether the call's span records: only then are attributes and events built.
    live: bool,
    info: CallInfo,
    attempts: AtomicU32,
}

impl CallState {
    fn on_event(&self, event: &Event) {
        if self.live {
            let (name, attrs) = span_event(event);
            self.cx.span().add_event(name, attrs);
        }
        if let Some(instruments) = &self.shared.instruments {
            record_event(instruments, &self.info, event);
        }
        tracing::debug!(
            target: LOG_TARGET,
            trace_id = %self.cx.span().span_context().trace_id(),
            event = ?event,
            "towline decision"
        );
    }

    fn finish(&self, ending: &Ending, elapsed: Duration, first_chunk: Option<Duration>) {
        if self.live {
            let span = self.cx.span();
            let mut attrs = Vec::with_capacity(6);
            ending.attributes(&mut attrs);
            if let Some(ttfc) = first_chunk {
                attrs.push(KeyValue::new(
                    GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
                    ttfc.as_secs_f64(),
                ));
            }
            span.set_attributes(attrs);
            if ending.body_dropped {
                span.add_event(EVENT_BODY_DROPPED, Vec::new());
            }
            if let Some(status) = ending.span_status() {
                span.set_status(status);
            }
            span.end();
        }
        if let Some(instruments) = &self.shared.instruments {
            let mut attrs = MetricAttrs::new();
            self.info.gen_ai_attributes(&mut attrs);
            self.info.server_attributes(&mut attrs);
            if let Some(error_type) = &ending.error_type {
                attrs.push(KeyValue::new(ERROR_TYPE, error_type.clone()));
            }
            instruments.calls.add(1, &attrs);
            instruments
                .call_duration
                .record(elapsed.as_secs_f64(), &attrs);
        }
        tracing::debug!(
            target: LOG_TARGET,
            trace_id = %self.cx.span().span_context().trace_id(),
            error_type = ending.error_type.as_deref().unwrap_or(""),
            status = ending.status.unwrap_or(0),
            elapsed_ms = elapsed.as_millis() as u64,
            "towline call finished"
        );
    }
}

/// One attempt.
pub(crate) struct AttemptState {
    shared: Arc<Shared>,
    cx: Context,
    live: bool,
    method: &'static str,
    server: Option<(Arc<str>, u16)>,
}

impl AttemptState {
    fn finish(&self, ending: &Ending, elapsed: Duration) {
        if self.live {
            let span = self.cx.span();
            let mut attrs = Vec::with_capacity(5);
            ending.attributes(&mut attrs);
            span.set_attributes(attrs);
            if let Some(status) = ending.span_status() {
                span.set_status(status);
            }
            span.end();
        }
        if let Some(instruments) = &self.shared.instruments {
            let mut attrs = MetricAttrs::new();
            attrs.push(KeyValue::new(HTTP_REQUEST_METHOD, self.method));
            describe::server_attributes(self.server.as_ref(), &mut attrs);
            if let Some(status) = ending.status {
                attrs.push(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
            }
            if let Some(error_type) = &ending.error_type {
                attrs.push(KeyValue::new(ERROR_TYPE, error_type.clone()));
            }
            instruments
                .http_duration
                .record(elapsed.as_secs_f64(), &attrs);
        }
    }
}

/// How a call or an attempt ended.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    status: Option<u16>,
    error_type: Option<Cow<'static, str>>,
    /// Whether the span's status is `Error` (not for a cancellation).
    failed: bool,
    provider_error_type: Option<Value>,
    provider_error_code: Option<Value>,
    request_id: Option<Value>,
    /// The response body was dropped before its end.
    pub(crate) body_dropped: bool,
}

impl Ending {
    /// The caller dropped the call before it finished.
    fn cancelled() -> Self {
        Ending {
            error_type: Some(Cow::Borrowed("cancelled")),
            ..Ending::default()
        }
    }

    /// A response arrived; until its body ends, it counts as dropped early.
    pub(crate) fn response<B>(resp: &Response<B>) -> Self {
        let status = resp.status();
        let failed = status.is_client_error() || status.is_server_error();
        Ending {
            status: Some(status.as_u16()),
            error_type: failed.then(|| Cow::Owned(status.as_str().to_owned())),
            failed,
            request_id: describe::request_id(resp.headers()).map(describe::value_of),
            body_dropped: true,
            ..Ending::default()
        }
    }

    /// The call or attempt failed with `err`.
    pub(crate) fn error(err: &Error) -> Self {
        let api = err.api();
        let safe = |s: Option<&str>| {
            s.filter(|s| describe::is_safe_token(s))
                .map(describe::value_of)
        };
        Ending {
            status: err.status().map(|s| s.as_u16()),
            error_type: Some(Cow::Borrowed(err.kind().as_str())),
            failed: true,
            provider_error_type: safe(api.and_then(|a| a.provider_type())),
            provider_error_code: safe(api.and_then(|a| a.provider_code())),
            request_id: safe(api.and_then(|a| a.request_id())),
            body_dropped: false,
        }
    }

    /// The response body failed after its head arrived.
    fn body_error(&mut self, err: &dyn Any, delivered: bool) {
        let towline = err.downcast_ref::<Error>().or_else(|| {
            err.downcast_ref::<BoxError>()
                .and_then(|e| e.downcast_ref::<Error>())
        });
        let (status, request_id) = (self.status, self.request_id.take());
        *self = match towline {
            Some(err) => Ending::error(err),
            None => Ending {
                error_type: Some(Cow::Borrowed(if delivered {
                    ErrorKind::StreamInterrupted.as_str()
                } else {
                    ErrorKind::Transport.as_str()
                })),
                failed: true,
                ..Ending::default()
            },
        };
        // What the response head said still holds when the error does not say better.
        self.status = self.status.or(status);
        self.request_id = self.request_id.take().or(request_id);
    }

    fn attributes(&self, attrs: &mut Vec<KeyValue>) {
        if let Some(status) = self.status {
            attrs.push(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
        }
        if let Some(error_type) = &self.error_type {
            attrs.push(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        let optional = [
            (PROVIDER_ERROR_TYPE, &self.provider_error_type),
            (PROVIDER_ERROR_CODE, &self.provider_error_code),
            (PROVIDER_REQUEST_ID, &self.request_id),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attrs.push(KeyValue::new(key, value.clone()));
            }
        }
    }

    fn span_status(&self) -> Option<Status> {
        let error_type = self.error_type.as_ref().filter(|_| self.failed)?;
        Some(Status::error(error_type.clone()))
    }
}

/// Whose span a guard ends.
pub(crate) enum Target {
    Call(Arc<CallState>),
    Attempt(AttemptState),
}

/// Ends a call's or an attempt's span and records its metrics exactly once, when dropped: by
/// the response future on an error, by the response body at its end, or by whichever of them
/// the caller drops first (a cancellation). Boxed, so that futures and bodies carrying none stay
/// small.
pub(crate) struct Guard {
    target: Target,
    start: Instant,
    pub(crate) ending: Ending,
    first_chunk: Option<Instant>,
    delivered: bool,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.target {
            Target::Call(_) => "call",
            Target::Attempt(_) => "attempt",
        };
        f.debug_struct("Guard")
            .field("target", &kind)
            .finish_non_exhaustive()
    }
}

impl Guard {
    fn new(target: Target, start: Instant) -> Self {
        Guard {
            target,
            start,
            ending: Ending::cancelled(),
            first_chunk: None,
            delivered: false,
        }
    }

    /// A data frame of the response body went to the caller.
    #[inline]
    pub(crate) fn on_data(&mut self) {
        if !self.delivered {
            self.delivered = true;
            if let Target::Call(call) = &self.target
                && call.live
                && call.info.stream == Some(true)
            {
                self.first_chunk = Some(Instant::now());
            }
        }
    }

    /// The response body ended normally.
    pub(crate) fn on_end(&mut self) {
        self.ending.body_dropped = false;
    }

    /// The response body failed.
    pub(crate) fn on_body_error(&mut self, err: &dyn Any) {
        let delivered = self.delivered;
        self.ending.body_error(err, delivered);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        match &self.target {
            Target::Call(call) => {
                let first_chunk = self.first_chunk.map(|t| t.duration_since(self.start));
                call.finish(&self.ending, elapsed, first_chunk)
            }
            Target::Attempt(attempt) => attempt.finish(&self.ending, elapsed),
        }
    }
}

// ---- decision events -------------------------------------------------------------------------

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn session_reason(reason: &towline_core::SessionQueueReason) -> &'static str {
    match reason {
        towline_core::SessionQueueReason::Full { .. } => "full",
        towline_core::SessionQueueReason::WaitTooLong { .. } => "wait_too_long",
        _ => "other",
    }
}

/// The span event for a decision.
fn span_event(event: &Event) -> (&'static str, Vec<KeyValue>) {
    match *event {
        Event::SessionWaited { waited } => (
            EVENT_SESSION_WAITED,
            vec![KeyValue::new(WAIT, secs(waited))],
        ),
        Event::SessionRejected { reason } => {
            let mut attrs = vec![KeyValue::new(SESSION_REASON, session_reason(&reason))];
            if let towline_core::SessionQueueReason::WaitTooLong { waited } = reason {
                attrs.push(KeyValue::new(WAIT, secs(waited)));
            }
            (EVENT_SESSION_REJECTED, attrs)
        }
        Event::ThrottleWaited { waited } => (
            EVENT_THROTTLE_WAITED,
            vec![KeyValue::new(WAIT, secs(waited))],
        ),
        Event::ThrottleRejected {
            reason,
            retry_after,
        } => {
            let mut attrs = vec![KeyValue::new(THROTTLE_REASON, reason.as_str())];
            if let Some(after) = retry_after {
                attrs.push(KeyValue::new(RETRY_AFTER, secs(after)));
            }
            (EVENT_THROTTLE_REJECTED, attrs)
        }
        Event::KeyPaused { key, pause, cause } => (
            EVENT_KEY_PAUSED,
            with_key(
                vec![
                    KeyValue::new(THROTTLE_PAUSE, secs(pause)),
                    KeyValue::new(THROTTLE_CAUSE, cause.as_str()),
                ],
                key,
            ),
        ),
        Event::RateLearned { key, per_second } => (
            EVENT_RATE_LEARNED,
            with_key(vec![KeyValue::new(THROTTLE_RATE, per_second)], key),
        ),
        Event::BreakerRejected { retry_after } => (
            EVENT_BREAKER_REJECTED,
            vec![KeyValue::new(RETRY_AFTER, secs(retry_after))],
        ),
        Event::BreakerTransition { from, to } => (
            EVENT_BREAKER_TRANSITION,
            vec![
                KeyValue::new(BREAKER_FROM, from.as_str()),
                KeyValue::new(BREAKER_TO, to.as_str()),
            ],
        ),
        Event::RetryScheduled {
            attempt,
            delay,
            reason,
        } => (
            EVENT_RETRY_SCHEDULED,
            vec![
                KeyValue::new(RETRY_ATTEMPT, i64::from(attempt)),
                KeyValue::new(RETRY_DELAY, secs(delay)),
                KeyValue::new(ERROR_TYPE, reason.as_str()),
            ],
        ),
        Event::RetryStopped { attempts, reason } => (
            EVENT_RETRY_STOPPED,
            vec![
                KeyValue::new(RETRY_ATTEMPTS, i64::from(attempts)),
                KeyValue::new(RETRY_STOP_REASON, reason.as_str()),
            ],
        ),
        // A decision this version does not know: its name is all that is safe to say.
        _ => (EVENT_OTHER, Vec::new()),
    }
}

/// The metric points for a decision.
fn record_event(instruments: &Instruments, info: &CallInfo, event: &Event) {
    let mut attrs = MetricAttrs::new();
    info.server_attributes(&mut attrs);
    if let Some(provider) = &info.provider {
        attrs.push(KeyValue::new(GEN_AI_PROVIDER_NAME, provider.clone()));
    }
    let with = |mut attrs: MetricAttrs, extra: KeyValue| {
        attrs.push(extra);
        attrs
    };
    match *event {
        Event::SessionWaited { waited } => instruments.session_wait.record(secs(waited), &attrs),
        Event::SessionRejected { reason } => instruments.session_rejections.add(
            1,
            &with(
                attrs,
                KeyValue::new(SESSION_REASON, session_reason(&reason)),
            ),
        ),
        Event::ThrottleWaited { waited } => instruments.throttle_wait.record(secs(waited), &attrs),
        Event::ThrottleRejected { reason, .. } => instruments.throttle_rejections.add(
            1,
            &with(attrs, KeyValue::new(THROTTLE_REASON, reason.as_str())),
        ),
        Event::KeyPaused { cause, .. } => instruments.throttle_pauses.add(
            1,
            &with(attrs, KeyValue::new(THROTTLE_CAUSE, cause.as_str())),
        ),
        // A gauge per key: labelled with the key's digest, never the key.
        Event::RateLearned { key, per_second } => instruments
            .learned_rate
            .record(per_second, &with_key(attrs, key)),
        Event::BreakerRejected { .. } => instruments.breaker_rejections.add(1, &attrs),
        Event::BreakerTransition { to, .. } => {
            use towline_core::CircuitState::*;
            for state in [Closed, Open, HalfOpen] {
                let point = with(attrs.clone(), KeyValue::new(BREAKER_STATE, state.as_str()));
                instruments
                    .breaker_state
                    .record(u64::from(state == to), &point);
            }
        }
        Event::RetryScheduled { reason, .. } => instruments
            .retries
            .add(1, &with(attrs, KeyValue::new(ERROR_TYPE, reason.as_str()))),
        Event::RetryStopped { reason, .. } => instruments.retry_stops.add(
            1,
            &with(attrs, KeyValue::new(RETRY_STOP_REASON, reason.as_str())),
        ),
        _ => {}
    }
}

/// `attrs` with the throttle key's digest (hex), when there is one.
fn with_key<A: Push>(mut attrs: A, key: Option<towline_core::KeyHash>) -> A {
    if let Some(key) = key {
        attrs.push(KeyValue::new(THROTTLE_KEY, key.to_string()));
    }
    attrs
}
