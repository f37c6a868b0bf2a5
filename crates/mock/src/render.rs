//! Rendering of provider errors, byte for byte, in each dialect.
//!
//! Where a seed document gives an example body, the mock sends exactly that body (same field
//! names, same order, same message), written compactly as servers send JSON. Where it gives
//! none, the wording follows the provider's public documentation or SDK sources.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use towline_core::ErrorKind;

use crate::Dialect;

/// How a retry hint is announced.
///
/// ```
/// use std::time::Duration;
/// use towline_core::ErrorKind;
/// use towline_mock::{render, Dialect, ErrorSpec, HintForm, RetryAfter};
///
/// let spec = ErrorSpec::new(ErrorKind::RateLimited)
///     .retry_after(RetryAfter::millis(1500).form(HintForm::SecondsAndMillis));
/// let r = render(Dialect::OpenAi, &spec);
/// assert_eq!(r.headers["retry-after-ms"], "1500");
/// assert_eq!(r.headers["retry-after"], "2");
/// assert_eq!(r.hint, Some(Duration::from_millis(1500)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HintForm {
    /// `Retry-After: N`, whole seconds rounded up.
    Seconds,
    /// `Retry-After: <HTTP-date>`, the instant rounded up to the next whole second.
    HttpDate,
    /// `retry-after-ms: N`, whole milliseconds rounded up.
    #[serde(rename = "ms")]
    Millis,
    /// Both `retry-after-ms` and `Retry-After` (what OpenAI's and Azure's clients read);
    /// the milliseconds take precedence.
    #[serde(rename = "seconds_and_ms")]
    SecondsAndMillis,
    /// Inside the body, where the dialect keeps it: Gemini `RetryInfo.retryDelay`, aiapi
    /// `data.retry_after`, otherwise "Please try again in 1.5s." appended to the message.
    Body,
}

impl HintForm {
    /// The form a dialect uses when a script does not choose one: `Body` for Gemini (it sends
    /// no header), `Seconds` for everyone else.
    pub const fn default_for(dialect: Dialect) -> HintForm {
        match dialect {
            Dialect::Gemini => HintForm::Body,
            _ => HintForm::Seconds,
        }
    }
}

/// A retry hint to announce: how long, and in which form.
///
/// ```
/// use std::time::Duration;
/// use towline_mock::{HintForm, RetryAfter};
///
/// let hint = RetryAfter::secs(2).form(HintForm::HttpDate);
/// assert_eq!(hint.delay(), Duration::from_secs(2));
/// assert_eq!(hint.hint_form(), Some(HintForm::HttpDate));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    delay: Duration,
    form: Option<HintForm>,
}

impl RetryAfter {
    /// A hint of `delay`, in the dialect's usual form.
    pub const fn new(delay: Duration) -> Self {
        RetryAfter { delay, form: None }
    }

    /// A hint of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        RetryAfter::new(Duration::from_secs(secs))
    }

    /// A hint of `ms` milliseconds.
    pub const fn millis(ms: u64) -> Self {
        RetryAfter::new(Duration::from_millis(ms))
    }

    /// Announces the hint in `form` instead of the dialect's usual one.
    pub const fn form(mut self, form: HintForm) -> Self {
        self.form = Some(form);
        self
    }

    /// The delay.
    pub const fn delay(&self) -> Duration {
        self.delay
    }

    /// The chosen form, `None` for the dialect's usual one.
    pub const fn hint_form(&self) -> Option<HintForm> {
        self.form
    }
}

/// Rate-limit figures to report in the dialect's `x-ratelimit-*` flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LimitInfo {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Until the window is full again.
    pub(crate) reset: Duration,
}

/// One provider error to render: its class, and optionally the status, message, code, retry
/// hint, `x-should-retry` and request id to send with it.
///
/// Everything left unset takes the dialect's usual value for the class (see [`render`]).
///
/// ```
/// use towline_core::ErrorKind;
/// use towline_mock::{ErrorSpec, RetryAfter};
///
/// let spec = ErrorSpec::new(ErrorKind::QuotaExhausted).status(403);
/// assert_eq!(spec.kind(), ErrorKind::QuotaExhausted);
/// let spec: ErrorSpec = ErrorKind::Overloaded.into();
/// assert_eq!(spec.status_override(), None);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorSpec {
    kind: ErrorKind,
    status: Option<u16>,
    message: Option<String>,
    code: Option<String>,
    retry_after: Option<RetryAfter>,
    should_retry: Option<bool>,
    request_id: Option<String>,
    pub(crate) limit: Option<LimitInfo>,
}

impl ErrorSpec {
    /// An error of class `kind`, everything else as the dialect usually sends it.
    ///
    /// Classes a provider cannot send (towline's local decisions, `transport`,
    /// `stream_interrupted`, `unknown`) are refused when a script is validated; [`render`]
    /// renders them as a server error.
    pub fn new(kind: ErrorKind) -> Self {
        ErrorSpec {
            kind,
            status: None,
            message: None,
            code: None,
            retry_after: None,
            should_retry: None,
            request_id: None,
            limit: None,
        }
    }

    /// Sends `status` instead of the dialect's usual one (it may also pick the dialect's
    /// variant for that status, e.g. Moonshot's 403 quota message).
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sends `message` instead of the dialect's usual one.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Replaces the dialect's discriminating field: Moonshot's and Anthropic's `error.type`,
    /// OpenAI's, MiMo's, Kaiko's and aiapi's `code`, kimi-free-api's numeric code (must be an
    /// integer), Gemini's `status`.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Announces a retry hint.
    pub fn retry_after(mut self, hint: RetryAfter) -> Self {
        self.retry_after = Some(hint);
        self
    }

    /// Sends `x-should-retry: true|false`.
    pub fn should_retry(mut self, should_retry: bool) -> Self {
        self.should_retry = Some(should_retry);
        self
    }

    /// The request id to put in the header (and in the body, for dialects that carry it).
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// The class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The status override, if any.
    pub fn status_override(&self) -> Option<u16> {
        self.status
    }

    /// The message override, if any.
    pub fn message_override(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The code override, if any.
    pub fn code_override(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The retry hint, if any.
    pub fn retry_hint(&self) -> Option<RetryAfter> {
        self.retry_after
    }

    /// The `x-should-retry` value, if any.
    pub fn should_retry_header(&self) -> Option<bool> {
        self.should_retry
    }

    /// The request id, if any.
    pub fn request_id_value(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    pub(crate) fn set_request_id(&mut self, id: Option<String>) {
        self.request_id = id;
    }
}

impl From<ErrorKind> for ErrorSpec {
    fn from(kind: ErrorKind) -> Self {
        ErrorSpec::new(kind)
    }
}

/// Whether a provider can send an error of this class (everything but towline's local
/// decisions, `transport`, `stream_interrupted` and `unknown`).
///
/// ```
/// use towline_core::ErrorKind;
/// assert!(towline_mock::is_renderable(ErrorKind::Overloaded));
/// assert!(!towline_mock::is_renderable(ErrorKind::Throttled));
/// ```
pub fn is_renderable(kind: ErrorKind) -> bool {
    !kind.is_local()
        && !matches!(
            kind,
            ErrorKind::Transport | ErrorKind::StreamInterrupted | ErrorKind::Unknown
        )
}

/// A rendered error response: what the mock puts on the wire.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Rendered {
    /// The HTTP status (200 for kimi-free-api's real form).
    pub status: StatusCode,
    /// `content-type`, the retry hint headers, `x-should-retry`, the request id header and the
    /// dialect's rate-limit headers where it sends them.
    pub headers: HeaderMap,
    /// The body, compact JSON.
    pub body: Bytes,
    /// The retry hint as a client reads it (the header with the highest precedence, as
    /// rendered: rounded up to what the form can say), from the moment of rendering.
    pub hint: Option<Duration>,
}

/// Renders `error` in `dialect`, reading the wall clock for an HTTP-date hint.
///
/// ```
/// use towline_core::ErrorKind;
/// use towline_mock::{render, Dialect, ErrorSpec};
///
/// let r = render(Dialect::Moonshot, &ErrorSpec::new(ErrorKind::Authentication));
/// assert_eq!(r.status, 401);
/// assert_eq!(
///     r.body,
///     r#"{"error":{"message":"Invalid Authentication","type":"invalid_authentication_error"}}"#
/// );
/// ```
pub fn render(dialect: Dialect, error: &ErrorSpec) -> Rendered {
    render_at(dialect, error, SystemTime::now())
}

/// Renders `error` in `dialect` as of the wall-clock time `now` (used by HTTP-date hints and
/// epoch-second reset headers), so that tests can compare exact bytes.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use towline_core::ErrorKind;
/// use towline_mock::{render_at, Dialect, ErrorSpec, HintForm, RetryAfter};
///
/// let now = UNIX_EPOCH + Duration::from_millis(1_640_995_200_250);
/// let spec = ErrorSpec::new(ErrorKind::RateLimited).retry_after(RetryAfter::secs(2).form(HintForm::HttpDate));
/// let r = render_at(Dialect::OpenAi, &spec, now);
/// assert_eq!(r.headers["retry-after"], "Sat, 01 Jan 2022 00:00:03 GMT");
/// assert_eq!(r.hint, Some(Duration::from_millis(2750)));
/// ```
pub fn render_at(dialect: Dialect, error: &ErrorSpec, now: SystemTime) -> Rendered {
    let hint = error.retry_after.map(|h| Hint::resolve(h, dialect, now));
    let ctx = Ctx { error, hint };
    let (status, body) = match dialect {
        Dialect::OpenAi => openai(&ctx),
        Dialect::Moonshot => moonshot(&ctx),
        Dialect::Mimo => mimo(&ctx),
        Dialect::KaikoV2 => kaiko(&ctx),
        Dialect::Aiapi => aiapi(&ctx),
        Dialect::KimiFreeApi => kimi_free_api(&ctx, false),
        Dialect::KimiFreeApiDocumented => kimi_free_api(&ctx, true),
        Dialect::Anthropic => anthropic(&ctx),
        Dialect::Gemini => gemini(&ctx),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(hint) = &hint {
        hint.write_headers(&mut headers);
    }
    if let Some(should_retry) = error.should_retry {
        let value = if should_retry { "true" } else { "false" };
        headers.insert("x-should-retry", HeaderValue::from_static(value));
    }
    if let Some(id) = error.request_id.as_deref().and_then(header_value) {
        headers.insert(dialect.request_id_header(), id);
    }
    if let Some(limit) = rate_limit_figures(dialect, &ctx) {
        write_rate_limit_headers(dialect, &limit, now, &mut headers);
    }
    Rendered {
        status,
        headers,
        body: Bytes::from(body),
        hint: hint.map(|h| h.announced),
    }
}

/// The server-sent event that carries `rendered`'s body inside a stream that breaks.
///
/// Anthropic names it `event: error`; the others send a bare `data:` line with the error body.
/// aiapi.services and kimi-free-api relay OpenAI-compatible streams, whose in-band errors sit
/// under an `error` member (a bare `{"code":-2001}` chunk would read as content to every
/// OpenAI client): their flat bodies are wrapped in one there.
///
/// ```
/// use towline_core::ErrorKind;
/// use towline_mock::{render, stream_error_event, Dialect, ErrorSpec};
///
/// let r = render(Dialect::Anthropic, &ErrorSpec::new(ErrorKind::Overloaded));
/// let event = stream_error_event(Dialect::Anthropic, &r);
/// assert!(event.starts_with(b"event: error\ndata: {\"type\":\"error\""));
/// assert!(event.ends_with(b"\n\n"));
///
/// let r = render(Dialect::Aiapi, &ErrorSpec::new(ErrorKind::Server));
/// let event = stream_error_event(Dialect::Aiapi, &r);
/// assert!(event.starts_with(b"data: {\"error\":{\"code\":\"internal_error\""));
/// ```
pub fn stream_error_event(dialect: Dialect, rendered: &Rendered) -> Bytes {
    let (prefix, open, close): (&[u8], &[u8], &[u8]) = match dialect {
        Dialect::Anthropic => (b"event: error\ndata: ", b"", b""),
        Dialect::Aiapi | Dialect::KimiFreeApi | Dialect::KimiFreeApiDocumented => {
            (b"data: ", b"{\"error\":", b"}")
        }
        _ => (b"data: ", b"", b""),
    };
    let mut event = Vec::with_capacity(prefix.len() + rendered.body.len() + 16);
    for part in [prefix, open, &rendered.body, close, b"\n\n"] {
        event.extend_from_slice(part);
    }
    Bytes::from(event)
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

struct Ctx<'a> {
    error: &'a ErrorSpec,
    hint: Option<Hint>,
}

impl Ctx<'_> {
    fn kind(&self) -> ErrorKind {
        self.error.kind
    }

    /// The status override, or `usual`.
    fn status_or(&self, usual: u16) -> u16 {
        self.error.status.unwrap_or(usual)
    }

    fn message_or<'m>(&'m self, usual: &'m str) -> String {
        let base = self.error.message.as_deref().unwrap_or(usual);
        match self.body_hint_text() {
            Some(text) => format!("{base} Please try again in {text}."),
            None => base.to_owned(),
        }
    }

    fn code_or<'m>(&'m self, usual: &'m str) -> &'m str {
        self.error.code.as_deref().unwrap_or(usual)
    }

    /// The hint written into a message, for dialects with no structured body hint.
    fn body_hint_text(&self) -> Option<String> {
        self.hint
            .as_ref()
            .filter(|h| h.form == HintForm::Body && h.in_message)
            .map(|h| fmt_secs(h.delay))
    }

    fn request_id(&self) -> Option<&str> {
        self.error.request_id.as_deref()
    }
}

/// A hint resolved to its form and to what a client will read from it.
#[derive(Debug, Clone, Copy)]
struct Hint {
    delay: Duration,
    form: HintForm,
    /// Whether a body hint goes into the message (dialects without a structured field).
    in_message: bool,
    /// What a client reads, from the moment of rendering.
    announced: Duration,
    /// For `HttpDate`: the instant named.
    date: Option<SystemTime>,
}

impl Hint {
    fn resolve(hint: RetryAfter, dialect: Dialect, now: SystemTime) -> Hint {
        let form = hint.form.unwrap_or(HintForm::default_for(dialect));
        let delay = hint.delay;
        let mut date = None;
        let announced = match form {
            HintForm::Seconds => Duration::from_secs(ceil_secs(delay)),
            HintForm::Millis | HintForm::SecondsAndMillis => Duration::from_millis(ceil_ms(delay)),
            HintForm::HttpDate => {
                let at = ceil_to_second(now + delay);
                date = Some(at);
                at.duration_since(now).unwrap_or_default()
            }
            HintForm::Body => match dialect {
                Dialect::Aiapi => Duration::from_secs(ceil_secs(delay)),
                _ => Duration::from_millis(ceil_ms(delay)),
            },
        };
        let in_message =
            form == HintForm::Body && !matches!(dialect, Dialect::Aiapi | Dialect::Gemini);
        Hint {
            delay,
            form,
            in_message,
            announced,
            date,
        }
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        let secs = || HeaderValue::from(ceil_secs(self.delay));
        let ms = || HeaderValue::from(ceil_ms(self.delay));
        match self.form {
            HintForm::Seconds => {
                headers.insert(RETRY_AFTER, secs());
            }
            HintForm::Millis => {
                headers.insert("retry-after-ms", ms());
            }
            HintForm::SecondsAndMillis => {
                headers.insert("retry-after-ms", ms());
                headers.insert(RETRY_AFTER, secs());
            }
            HintForm::HttpDate => {
                let date = httpdate::fmt_http_date(self.date.unwrap_or(UNIX_EPOCH));
                if let Some(value) = header_value(&date) {
                    headers.insert(RETRY_AFTER, value);
                }
            }
            HintForm::Body => {}
        }
    }

    /// Whole seconds, as integer body fields (aiapi's `data.retry_after`) carry them.
    fn whole_secs(&self) -> u64 {
        ceil_secs(self.delay)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = ms + u128::from(!d.as_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

fn ceil_to_second(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(ceil_secs(since))
}

/// `26s`, `1.5s`, `0.25s`: seconds with at most millisecond precision, as Gemini's
/// `retryDelay` and "try again in" messages write them.
pub(crate) fn fmt_secs(d: Duration) -> String {
    let ms = ceil_ms(d);
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{frac:03}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// OpenAI: {"error":{"message","type","param","code"}}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

fn openai(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    let (status, message, kind, param, code) = match ctx.kind() {
        Authentication => (
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        PermissionDenied => (
            403,
            "You are not allowed to sample from this model",
            "invalid_request_error",
            None,
            None,
        ),
        QuotaExhausted => (
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            None,
            Some("insufficient_quota"),
        ),
        RateLimited => (
            429,
            "Rate limit reached for requests",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        Overloaded => (
            503,
            "The server is overloaded or not ready yet.",
            "server_error",
            None,
            Some("server_is_overloaded"),
        ),
        InvalidRequest => (
            400,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("messages"),
            Some("missing_required_parameter"),
        ),
        ContextLengthExceeded => (
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        ContentFiltered => (
            400,
            "The response was filtered due to the prompt triggering the content management policy. Please modify your prompt and retry.",
            "invalid_request_error",
            Some("prompt"),
            Some("content_filter"),
        ),
        NotFound => (
            404,
            "The model `mock-model` does not exist or you do not have access to it.",
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        Conflict => (
            409,
            "Another request with the same idempotency key is already being processed.",
            "invalid_request_error",
            None,
            Some("conflict"),
        ),
        PayloadTooLarge => (
            413,
            "Request too large. Reduce the size of your request and try again.",
            "invalid_request_error",
            None,
            Some("request_too_large"),
        ),
        Timeout => (
            504,
            "The server timed out while processing your request. Please try again.",
            "server_error",
            None,
            Some("timeout"),
        ),
        _ => (
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
    };
    let code = match &ctx.error.code {
        Some(c) => Some(c.as_str()),
        None => code,
    };
    let body = OpenAiBody {
        error: OpenAiError {
            message: ctx.message_or(message),
            kind,
            param,
            code,
        },
    };
    (ctx.status_or(status), to_json(&body))
}

// ---------------------------------------------------------------------------------------------
// Moonshot / Kimi: {"error":{"message","type"}}, in the order of the seed's examples.

#[derive(Serialize)]
struct MoonshotBody<E> {
    error: E,
}

#[derive(Serialize)]
struct MessageThenType<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct TypeThenMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: String,
}

fn moonshot(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    // `true`: the seed shows this error with `type` before `message`.
    let (status, kind, message, type_first) = match (ctx.kind(), ctx.error.status) {
        (Authentication, _) => (
            401,
            "invalid_authentication_error",
            "Invalid Authentication",
            false,
        ),
        (PermissionDenied, _) => (
            403,
            "permission_denied_error",
            "The API key does not have permission to access this resource",
            false,
        ),
        (QuotaExhausted, Some(403)) => (
            403,
            "exceeded_current_quota_error",
            "Your account <ID> is not active, organization <ORG> exceeded current quota, please check your plan and billing details",
            false,
        ),
        (QuotaExhausted, _) => (
            429,
            "exceeded_current_quota_error",
            "Your account is not active or has exceeded the current quota. Please check your plan and billing details.",
            true,
        ),
        (RateLimited, _) => (
            429,
            "rate_limit_reached_error",
            "Your account reached its max request rate, please try again later",
            false,
        ),
        (Overloaded, _) => (
            429,
            "engine_overloaded_error",
            "The engine is currently overloaded, please try again later",
            false,
        ),
        (InvalidRequest, _) => (
            400,
            "invalid_request_error",
            "content must be a string",
            false,
        ),
        (ContextLengthExceeded, _) => (
            400,
            "invalid_request_error",
            "Input token length too long",
            false,
        ),
        (ContentFiltered, _) => (
            400,
            "content_filter",
            "The request was rejected because it was considered high risk",
            true,
        ),
        (NotFound, _) => (
            404,
            "resource_not_found_error",
            "Not found the model mock-model or Permission denied",
            false,
        ),
        (Conflict, _) => (
            409,
            "conflict_error",
            "The request conflicts with another request in progress",
            false,
        ),
        (PayloadTooLarge, _) => (
            413,
            "invalid_request_error",
            "Request body too large",
            false,
        ),
        (Timeout, _) => (
            504,
            "timeout_error",
            "Request timed out, please try again later",
            false,
        ),
        (_, Some(503)) => (
            503,
            "server_unavailable",
            "Service is temporarily unavailable, please try again later",
            false,
        ),
        _ => (
            500,
            "server_error",
            "Internal server error, please try again later",
            false,
        ),
    };
    let kind = ctx.code_or(kind);
    let message = ctx.message_or(message);
    let body = if type_first {
        to_json(&MoonshotBody {
            error: TypeThenMessage { kind, message },
        })
    } else {
        to_json(&MoonshotBody {
            error: MessageThenType { message, kind },
        })
    };
    (ctx.status_or(status), body)
}

// ---------------------------------------------------------------------------------------------
// Xiaomi MiMo: {"error":{"code","message","type":"error"}}

#[derive(Serialize)]
struct MimoBody<'a> {
    error: MimoError<'a>,
}

#[derive(Serialize)]
struct MimoError<'a> {
    code: &'a str,
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

fn mimo(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    let (status, code, message) = match ctx.kind() {
        InvalidRequest => (
            400,
            "invalid_request",
            "The request body is malformed or missing required fields",
        ),
        Authentication => (401, "authentication_failed", "Invalid API Key provided."),
        QuotaExhausted => (402, "insufficient_balance", "Insufficient account balance"),
        PermissionDenied => (
            403,
            "permission_denied",
            "Your account does not have access to this resource",
        ),
        NotFound => (404, "not_found", "The requested resource does not exist"),
        ContentFiltered => (
            421,
            "content_filter",
            "The content was rejected by the content security policy",
        ),
        RateLimited => (
            429,
            "rate_limit_exceeded",
            "Too many requests, rate limit exceeded",
        ),
        Overloaded => (
            503,
            "service_unavailable",
            "Service temporarily unavailable due to high load",
        ),
        ContextLengthExceeded => (
            400,
            "invalid_request",
            "The input token length exceeds the maximum context length of the model",
        ),
        Conflict => (
            409,
            "conflict",
            "The request conflicts with the current state of the resource",
        ),
        PayloadTooLarge => (413, "payload_too_large", "The request body is too large"),
        Timeout => (504, "timeout", "The request timed out"),
        _ => (500, "internal_error", "Server internal error"),
    };
    let body = MimoBody {
        error: MimoError {
            code: ctx.code_or(code),
            message: ctx.message_or(message),
            kind: "error",
        },
    };
    (ctx.status_or(status), to_json(&body))
}

// ---------------------------------------------------------------------------------------------
// Kaiko V2: {"error":{"type","code","message","param","request_id"}}

#[derive(Serialize)]
struct KaikoBody<'a> {
    error: KaikoError<'a>,
}

#[derive(Serialize)]
struct KaikoError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    message: String,
    param: Option<&'a str>,
    request_id: Option<&'a str>,
}

fn kaiko(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    let (status, kind, code, message, param) = match (ctx.kind(), ctx.error.status) {
        (InvalidRequest, Some(422)) => (
            422,
            "invalid_request_error",
            "invalid_role",
            "Invalid value for a field",
            None,
        ),
        (InvalidRequest, _) => (
            400,
            "invalid_request_error",
            "missing_field",
            "The 'messages' field is required",
            Some("messages"),
        ),
        (Authentication, _) => (
            401,
            "authentication_error",
            "invalid_api_key",
            "Missing or invalid API key",
            None,
        ),
        (PermissionDenied, _) => (
            403,
            "forbidden_error",
            "key_revoked",
            "API key revoked or insufficient permissions",
            None,
        ),
        (NotFound, _) => (
            404,
            "not_found_error",
            "context_not_found",
            "Resource not found or context expired",
            None,
        ),
        (Conflict, _) => (
            409,
            "conflict_error",
            "duplicate_id",
            "Duplicate external_id in same context",
            None,
        ),
        (PayloadTooLarge, _) => (
            413,
            "invalid_request_error",
            "payload_too_large",
            "Request body exceeds size limit",
            None,
        ),
        (RateLimited, _) => (
            429,
            "rate_limit_error",
            "too_many_requests",
            "Rate limit exceeded",
            None,
        ),
        (QuotaExhausted, _) => (
            429,
            "rate_limit_error",
            "quota_exceeded",
            "Monthly quota exceeded for this API key",
            None,
        ),
        (ContextLengthExceeded, _) => (
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "Message history exceeds the model's context limit",
            Some("messages"),
        ),
        (ContentFiltered, _) => (
            400,
            "invalid_request_error",
            "content_filtered",
            "Content rejected by the safety filter",
            Some("messages"),
        ),
        (Timeout, _) => (
            504,
            "server_error",
            "timeout",
            "Request timed out after 30 seconds",
            None,
        ),
        (Overloaded, _) | (_, Some(503)) => (
            503,
            "server_error",
            "service_unavailable",
            "Service temporarily unavailable",
            None,
        ),
        _ => (
            500,
            "server_error",
            "internal",
            "Unexpected server error",
            None,
        ),
    };
    let body = KaikoBody {
        error: KaikoError {
            kind,
            code: ctx.code_or(code),
            message: ctx.message_or(message),
            param,
            request_id: ctx.request_id(),
        },
    };
    (ctx.status_or(status), to_json(&body))
}

// ---------------------------------------------------------------------------------------------
// aiapi.services: {"code","message","data"}

#[derive(Serialize)]
struct AiapiBody<'a> {
    code: &'a str,
    message: String,
    data: AiapiData,
}

#[derive(Serialize)]
#[serde(untagged)]
enum AiapiData {
    Null(Option<()>),
    RetryAfter { retry_after: u64 },
    Reason { reason: &'static str },
}

fn aiapi(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    let null = AiapiData::Null(None);
    let (status, code, message, data) = match (ctx.kind(), ctx.error.status) {
        (QuotaExhausted, _) => (403, "quota_not_enough", "user quota is not enough", null),
        (Authentication, _) => (401, "invalid_api_key", "Invalid API key provided", null),
        (NotFound, _) => (
            404,
            "model_not_found",
            "model 'invalid-model-name' not found",
            null,
        ),
        (InvalidRequest, _) => (
            400,
            "invalid_request_error",
            "Invalid parameter: max_tokens must be a positive integer",
            null,
        ),
        (RateLimited, _) => (
            429,
            "rate_limit_exceeded",
            "Rate limit exceeded. Please try again later.",
            match &ctx.hint {
                Some(hint) => AiapiData::RetryAfter {
                    retry_after: hint.whole_secs(),
                },
                None => null,
            },
        ),
        (ContentFiltered, _) => (
            400,
            "content_filtered",
            "Your request was rejected due to content policy",
            AiapiData::Reason {
                reason: "inappropriate_content",
            },
        ),
        (PermissionDenied, _) => (
            403,
            "permission_denied",
            "Insufficient permissions or restricted model access",
            null,
        ),
        (ContextLengthExceeded, _) => (
            400,
            "context_length_exceeded",
            "Input exceeds the model's maximum context length",
            null,
        ),
        (Conflict, _) => (
            409,
            "conflict",
            "Request conflicts with the current state of the resource",
            null,
        ),
        (PayloadTooLarge, _) => (413, "request_too_large", "Request body too large", null),
        (Timeout, _) => (504, "gateway_timeout", "Upstream request timed out", null),
        (Overloaded, _) | (_, Some(503)) => (
            503,
            "service_unavailable",
            "Service maintenance or overload",
            null,
        ),
        (_, Some(502)) => (
            502,
            "bad_gateway",
            "Upstream service temporarily unavailable",
            null,
        ),
        _ => (500, "internal_error", "Temporary server failure", null),
    };
    let body = AiapiBody {
        code: ctx.code_or(code),
        message: ctx.message_or(message),
        data,
    };
    (ctx.status_or(status), to_json(&body))
}

// ---------------------------------------------------------------------------------------------
// kimi-free-api: {"code","message","data"} with HTTP 200 (real) / {"errcode","errmsg","data"}
// with 4xx-5xx (documented).

#[derive(Serialize)]
struct KimiRealBody {
    code: i64,
    message: String,
    data: Option<()>,
}

#[derive(Serialize)]
struct KimiDocumentedBody {
    errcode: i64,
    errmsg: String,
    data: Option<()>,
}

/// The kimi-free-api code for a class.
fn kimi_code(kind: ErrorKind) -> i64 {
    use ErrorKind::*;
    match kind {
        Server => -1000,
        InvalidRequest => -1001,
        NotFound => -1002,
        ContextLengthExceeded => -2000,
        Authentication => -2002,
        PayloadTooLarge => -2004,
        RateLimited => -2005,
        QuotaExhausted => -2006,
        _ => -2001,
    }
}

/// kimi-free-api's message and documented HTTP status for a code (its `APIException` table; the
/// documented -1000 message is the article's).
fn kimi_entry(code: i64, documented: bool) -> (&'static str, u16) {
    match code {
        -1000 if documented => ("系统异常请稍后重试", 500),
        -1000 => ("系统异常", 500),
        -1001 => ("请求参数校验错误", 400),
        -1002 => ("无匹配的路由", 404),
        -2000 => ("请求参数非法", 400),
        -2002 => ("Token已失效", 401),
        -2003 => ("远程文件URL非法", 400),
        -2004 => ("远程文件超出大小", 413),
        -2005 => ("已有对话流正在输出", 429),
        -2006 => ("探索版使用量已达到上限", 429),
        _ => ("请求失败", 500),
    }
}

fn kimi_free_api(ctx: &Ctx<'_>, documented: bool) -> (u16, Vec<u8>) {
    let code = ctx
        .error
        .code
        .as_deref()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| kimi_code(ctx.kind()));
    let (message, status) = kimi_entry(code, documented);
    let message = ctx.message_or(message);
    if documented {
        let body = KimiDocumentedBody {
            errcode: code,
            errmsg: message,
            data: None,
        };
        (ctx.status_or(status), to_json(&body))
    } else {
        let body = KimiRealBody {
            code,
            message,
            data: None,
        };
        (ctx.status_or(200), to_json(&body))
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic: {"type":"error","error":{"type","message"},"request_id"}

#[derive(Serialize)]
struct AnthropicBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    error: AnthropicError<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: String,
}

fn anthropic(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    let (status, kind, message) = match ctx.kind() {
        InvalidRequest => (400, "invalid_request_error", "messages: Field required"),
        Authentication => (401, "authentication_error", "invalid x-api-key"),
        QuotaExhausted => (
            402,
            "billing_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        ),
        PermissionDenied => (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        NotFound => (404, "not_found_error", "model: mock-model"),
        PayloadTooLarge => (
            413,
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        RateLimited => (
            429,
            "rate_limit_error",
            "Number of requests has exceeded your per-minute rate limit",
        ),
        Overloaded => (529, "overloaded_error", "Overloaded"),
        ContextLengthExceeded => (
            400,
            "invalid_request_error",
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
        ContentFiltered => (
            400,
            "invalid_request_error",
            "Output blocked by content filtering policy",
        ),
        Conflict => (
            409,
            "invalid_request_error",
            "The request conflicts with another request in progress",
        ),
        Timeout => (504, "timeout_error", "Request timed out"),
        _ => (500, "api_error", "Internal server error"),
    };
    let body = AnthropicBody {
        kind: "error",
        error: AnthropicError {
            kind: ctx.code_or(kind),
            message: ctx.message_or(message),
        },
        request_id: ctx.request_id(),
    };
    (ctx.status_or(status), to_json(&body))
}

// ---------------------------------------------------------------------------------------------
// Gemini: {"error":{"code","message","status","details"}}

#[derive(Serialize)]
struct GeminiBody<'a> {
    error: GeminiError<'a>,
}

#[derive(Serialize)]
struct GeminiError<'a> {
    code: u16,
    message: String,
    status: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<GeminiDetail>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum GeminiDetail {
    QuotaFailure {
        #[serde(rename = "@type")]
        kind: &'static str,
        violations: [QuotaViolation; 1],
    },
    RetryInfo {
        #[serde(rename = "@type")]
        kind: &'static str,
        #[serde(rename = "retryDelay")]
        retry_delay: String,
    },
}

#[derive(Serialize)]
struct QuotaViolation {
    #[serde(rename = "quotaMetric")]
    quota_metric: &'static str,
    #[serde(rename = "quotaId")]
    quota_id: &'static str,
    #[serde(rename = "quotaValue")]
    quota_value: &'static str,
}

fn quota_failure(per_day: bool) -> GeminiDetail {
    let (quota_id, quota_value) = if per_day {
        ("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "250")
    } else {
        ("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "10")
    };
    GeminiDetail::QuotaFailure {
        kind: "type.googleapis.com/google.rpc.QuotaFailure",
        violations: [QuotaViolation {
            quota_metric: "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            quota_id,
            quota_value,
        }],
    }
}

fn gemini(ctx: &Ctx<'_>) -> (u16, Vec<u8>) {
    use ErrorKind::*;
    let exhausted = "Resource has been exhausted (e.g. check quota).";
    let (status, grpc, message) = match ctx.kind() {
        InvalidRequest => (
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
        ),
        Authentication => (
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ),
        PermissionDenied => (
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        ),
        NotFound => (
            404,
            "NOT_FOUND",
            "models/mock-model is not found for API version v1beta, or is not supported for generateContent.",
        ),
        Conflict => (409, "ABORTED", "The operation was aborted."),
        RateLimited | QuotaExhausted => (429, "RESOURCE_EXHAUSTED", exhausted),
        Overloaded => (
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
        ),
        Timeout => (
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        ContextLengthExceeded => (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        ),
        ContentFiltered => (
            400,
            "INVALID_ARGUMENT",
            "The request was blocked by the safety filters (blockReason: SAFETY).",
        ),
        PayloadTooLarge => (
            413,
            "INVALID_ARGUMENT",
            "Request payload size exceeds the limit: 20971520 bytes.",
        ),
        _ => (
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        ),
    };
    let mut details = Vec::new();
    match ctx.kind() {
        RateLimited => details.push(quota_failure(false)),
        QuotaExhausted => details.push(quota_failure(true)),
        _ => {}
    }
    if let Some(hint) = ctx.hint.as_ref().filter(|h| h.form == HintForm::Body) {
        details.push(GeminiDetail::RetryInfo {
            kind: "type.googleapis.com/google.rpc.RetryInfo",
            retry_delay: fmt_secs(hint.delay),
        });
    }
    let status = ctx.status_or(status);
    let body = GeminiBody {
        error: GeminiError {
            code: status,
            message: ctx.message_or(message),
            status: ctx.code_or(grpc),
            details,
        },
    };
    (status, to_json(&body))
}

// ---------------------------------------------------------------------------------------------
// Rate-limit headers.

/// The figures an error reports: the limiter's, or the dialect's documented example.
fn rate_limit_figures(dialect: Dialect, ctx: &Ctx<'_>) -> Option<LimitInfo> {
    if let Some(limit) = ctx.error.limit {
        return Some(limit);
    }
    if ctx.kind() != ErrorKind::RateLimited {
        return None;
    }
    match dialect {
        // The seed's example: limit 60, remaining 0, reset when the hint ends (60 s).
        Dialect::Aiapi => Some(LimitInfo {
            limit: 60,
            remaining: 0,
            reset: ctx
                .hint
                .map(|h| Duration::from_secs(h.whole_secs()))
                .unwrap_or(Duration::from_secs(60)),
        }),
        // The seed names `X-RateLimit-Remaining` on 429s.
        Dialect::KaikoV2 => Some(LimitInfo {
            limit: 60,
            remaining: 0,
            reset: ctx.hint.map(|h| h.announced).unwrap_or_default(),
        }),
        _ => None,
    }
}

/// Writes the dialect's rate-limit headers: OpenAI-style `x-ratelimit-{limit,remaining,reset}-
/// requests` with a Go duration, aiapi's with epoch seconds, Kaiko's `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-requests-*` with an RFC 3339 reset; Gemini sends none.
pub(crate) fn write_rate_limit_headers(
    dialect: Dialect,
    limit: &LimitInfo,
    now: SystemTime,
    headers: &mut HeaderMap,
) {
    let mut put = |name: &'static str, value: String| {
        if let Some(value) = header_value(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    match dialect {
        Dialect::Gemini => {}
        Dialect::KaikoV2 => {
            put("x-ratelimit-limit", limit.limit.to_string());
            put("x-ratelimit-remaining", limit.remaining.to_string());
            put("x-ratelimit-reset", ceil_secs(limit.reset).to_string());
        }
        Dialect::Aiapi => {
            let reset = ceil_to_second(now + limit.reset)
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            put("x-ratelimit-limit-requests", limit.limit.to_string());
            put(
                "x-ratelimit-remaining-requests",
                limit.remaining.to_string(),
            );
            put("x-ratelimit-reset-requests", reset.to_string());
        }
        Dialect::Anthropic => {
            put(
                "anthropic-ratelimit-requests-limit",
                limit.limit.to_string(),
            );
            put(
                "anthropic-ratelimit-requests-remaining",
                limit.remaining.to_string(),
            );
            put(
                "anthropic-ratelimit-requests-reset",
                rfc3339(ceil_to_second(now + limit.reset)),
            );
        }
        _ => {
            put("x-ratelimit-limit-requests", limit.limit.to_string());
            put(
                "x-ratelimit-remaining-requests",
                limit.remaining.to_string(),
            );
            put("x-ratelimit-reset-requests", go_duration(limit.reset));
        }
    }
}

/// A duration as Go's `time.Duration.String` writes it, to millisecond precision: `12ms`,
/// `1s`, `1.5s`, `6m0s`, `2m59.56s`, `1h0m0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = ceil_ms(d);
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let secs = fmt_secs(Duration::from_millis(rest));
    match (hours, minutes) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// `2022-01-01T00:00:03Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_go() {
        let cases = [
            (0, "0s"),
            (12, "12ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (360_000, "6m0s"),
            (179_560, "2m59.56s"),
            (3_600_000, "1h0m0s"),
        ];
        for (ms, want) in cases {
            assert_eq!(go_duration(Duration::from_millis(ms)), want, "{ms} ms");
        }
        assert_eq!(go_duration(Duration::from_micros(1)), "1ms", "rounds up");
    }

    #[test]
    fn rfc3339_and_civil_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_640_995_200);
        assert_eq!(rfc3339(t), "2022-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(rfc3339(leap), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn seconds_round_up_and_keep_millis() {
        assert_eq!(fmt_secs(Duration::from_secs(26)), "26s");
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_secs(Duration::from_millis(250)), "0.25s");
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_ms(Duration::from_micros(1500)), 2);
    }

    #[test]
    fn every_renderable_kind_renders_json_in_every_dialect() {
        for dialect in Dialect::ALL {
            for kind in ErrorKind::ALL.into_iter().filter(|k| is_renderable(*k)) {
                let r = render(dialect, &ErrorSpec::new(kind));
                let value: serde_json::Value = serde_json::from_slice(&r.body)
                    .unwrap_or_else(|e| panic!("{dialect} {kind}: {e}"));
                assert!(value.is_object(), "{dialect} {kind}");
                let expect_200 = dialect == Dialect::KimiFreeApi;
                assert_eq!(r.status == StatusCode::OK, expect_200, "{dialect} {kind}");
                assert!(r.status == StatusCode::OK || r.status.as_u16() >= 400);
            }
        }
    }

    #[test]
    fn body_hints_go_where_each_dialect_keeps_them() {
        let spec = |d| {
            render(
                d,
                &ErrorSpec::new(ErrorKind::RateLimited)
                    .retry_after(RetryAfter::millis(1500).form(HintForm::Body)),
            )
        };
        let gemini = spec(Dialect::Gemini);
        assert!(gemini.headers.get(RETRY_AFTER).is_none());
        assert!(
            std::str::from_utf8(&gemini.body)
                .unwrap()
                .contains(r#""retryDelay":"1.5s""#)
        );
        let openai = spec(Dialect::OpenAi);
        assert!(
            std::str::from_utf8(&openai.body)
                .unwrap()
                .contains("Please try again in 1.5s.")
        );
        let aiapi = spec(Dialect::Aiapi);
        assert!(
            std::str::from_utf8(&aiapi.body)
                .unwrap()
                .contains(r#""data":{"retry_after":2}"#)
        );
        assert_eq!(aiapi.hint, Some(Duration::from_secs(2)));
    }
}
