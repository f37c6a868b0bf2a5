//! Classification: status + headers + body of any provider dialect → one [`ApiError`].
//!
//! Pure functions, usable without the layer (the `towline classify` command, the mock's tests,
//! a custom client). Every dialect is recognised from the body itself; nothing is configured.
//!
//! # Order of decisions
//!
//! Following the dialect reference, the first rule that applies wins:
//!
//! 1. **Timeouts**: HTTP 408, 504 and Cloudflare's 522/524 are `Timeout` whatever the body says
//!    (the body of a gateway timeout describes the gateway, not the provider).
//! 2. **kimi-free-api** codes (`errcode`/`code` < 0): its own table (-2005 = `RateLimited`, ...).
//! 3. **Quota before rate limit**: quota types and codes of every provider
//!    (`exceeded_current_quota_error` on 429 *and* 403, `insufficient_quota`, `quota_not_enough`,
//!    `billing_error`, `Arrearage`, Zhipu 1113/1308 even on HTTP 429, ...), Gemini `quotaId`s
//!    containing `PerDay`, HTTP 402 (unless it carries a `Retry-After`), a 429/403 whose message
//!    says quota or token plan (MiMo), and a rate limit whose retry hint is longer than
//!    [`QUOTA_HINT`] (two minutes; Azure's 86400 s; this includes the reset of an exhausted
//!    window when that is the only hint, e.g. OpenRouter's `free-models-per-day`) or whose
//!    window has a limit of 0 (Mistral).
//! 4. **Rate limit**: rate types/codes (Zhipu 1302/1303, Gemini `RESOURCE_EXHAUSTED`, ...), else
//!    HTTP 429.
//! 5. **Context length and content filter before the generic 400**: by type/code, then by the
//!    message's wording on 4xx answers (and on in-stream errors).
//! 6. **Overloaded before the generic 429/5xx**: 529, 498, overload types, and 5xx messages that
//!    say "overloaded" / "high load" / "capacity".
//! 7. Any other recognised type or code (auth, permission, not found, conflict, payload too
//!    large, ...), then the **status** fallback, then the generic types (`server_error`,
//!    `invalid_request_error`) for answers whose status says nothing (HTTP 200 errors).
//!    `Unknown` at worst.
//!
//! Why a hint longer than two minutes means quota: a rate limit that clears in minutes is worth
//! waiting for; one that clears tomorrow is a quota in all but name, and retrying it only burns
//! the retry budget. The rule is only applied to answers that are rate limits; a 503 with a long
//! `Retry-After` is maintenance, not a quota.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use towline_core::{ApiError, ErrorKind, HintSource, RateLimitSnapshot, RetryHint};

use crate::dialect::{self, Fields, Shape};
use crate::headers::{self, LazyNow, SnapshotBuilder};
use crate::parse;
use crate::scrub::{self, Credential};
use crate::wording::{self, Wording};

/// A retry hint longer than this turns a rate limit into `QuotaExhausted`.
pub const QUOTA_HINT: Duration = Duration::from_secs(120);

/// Longest message kept from a body that is not JSON (a gateway's plain-text error).
const MAX_TEXT_MESSAGE: usize = 512;

/// Classifies an error answer: status, headers and (up to a limit) body.
///
/// Never panics; `Unknown` at worst. Wall-clock forms (HTTP-dates, epoch resets) are measured
/// from `SystemTime::now()`; use [`Classifier`] to choose "now" or to scrub the request's own
/// credential from the message.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use towline_core::ErrorKind;
///
/// let body = br#"{"error":{"type":"exceeded_current_quota_error","message":"Your account is not active or has exceeded the current quota."}}"#;
/// let err = towline_normalize::classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body);
/// assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
/// assert!(!err.is_retryable());
/// assert_eq!(err.provider_type(), Some("exceeded_current_quota_error"));
/// ```
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    Classifier::now().classify(status, headers, body)
}

/// Inspects a *successful* (HTTP 200) JSON body for an error answer: kimi-free-api's
/// `{"code":-2001,"message":..}` / `{"errcode":-2002,"errmsg":..}` (a negative numeric code;
/// `0` or no code is a success), or a non-null `error` member. `None` means it is a success.
///
/// ```
/// use http::HeaderMap;
/// use towline_core::ErrorKind;
/// use towline_normalize::classify_ok_body;
///
/// let err = classify_ok_body(&HeaderMap::new(), r#"{"code":-2001,"message":"请求失败","data":null}"#.as_bytes()).unwrap();
/// assert_eq!(err.kind(), ErrorKind::Server);
/// assert_eq!(err.provider_code(), Some("-2001"));
/// assert!(classify_ok_body(&HeaderMap::new(), br#"{"choices":[]}"#).is_none());
/// ```
pub fn classify_ok_body(headers: &HeaderMap, body: &[u8]) -> Option<ApiError> {
    Classifier::now().classify_ok_body(headers, body)
}

/// The retry hint of an answer, by precedence: `retry-after-ms`, `Retry-After` (seconds or
/// HTTP-date from `now`), then the body: Gemini `RetryInfo.retryDelay`, aiapi
/// `data.retry_after`, or a delay in the message ("try again in 23.5s", "retry after 6
/// seconds").
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use towline_core::HintSource;
///
/// let body = br#"{"code":"rate_limit_exceeded","message":"Rate limit exceeded.","data":{"retry_after":60}}"#;
/// let hint = towline_normalize::retry_hint(&HeaderMap::new(), body, SystemTime::now()).unwrap();
/// assert_eq!((hint.delay, hint.source), (Duration::from_secs(60), HintSource::Body));
/// ```
pub fn retry_hint(headers: &HeaderMap, body: &[u8], now: SystemTime) -> Option<RetryHint> {
    headers::retry_hint(headers, now).or_else(|| {
        let text = lossy_text(body);
        let fields = Fields::read(&text);
        let message = match &fields.message {
            Some(m) => Cow::Borrowed(m.as_ref()),
            None => text_message(&fields, &text),
        };
        body_hint(&fields, &message)
    })
}

/// Classification with a chosen wall clock and the request's credential to scrub.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use http::{HeaderMap, StatusCode};
/// use towline_normalize::Classifier;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_640_995_140);
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "1640995200".parse().unwrap());
/// let err = Classifier::new(now)
///     .with_credential(b"my-very-secret-key")
///     .classify(StatusCode::TOO_MANY_REQUESTS, &headers, br#"{"message":"key my-very-secret-key is busy"}"#);
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
/// assert_eq!(err.message(), Some("key [redacted] is busy"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Classifier {
    now: SystemTime,
    credential: Option<Credential>,
}

impl Classifier {
    /// A classifier measuring wall-clock values from `now`.
    pub fn new(now: SystemTime) -> Self {
        Classifier {
            now,
            credential: None,
        }
    }

    /// A classifier measuring from `SystemTime::now()`.
    pub fn now() -> Self {
        Classifier::new(SystemTime::now())
    }

    /// Also scrub exact echoes of `credential` (the request's API key) from messages. Only a
    /// digest is kept; see [`scrub`](crate::scrub).
    pub fn with_credential(mut self, credential: &[u8]) -> Self {
        self.credential = Credential::of(credential);
        self
    }

    /// Scrub echoes of an already digested credential.
    pub fn with_credential_digest(mut self, credential: Option<Credential>) -> Self {
        self.credential = credential;
        self
    }

    /// See [`classify`].
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
        let text = lossy_text(body);
        let fields = Fields::read(&text);
        self.build(status, status.as_u16(), headers, &fields, &text)
    }

    /// See [`classify_ok_body`].
    pub fn classify_ok_body(&self, headers: &HeaderMap, body: &[u8]) -> Option<ApiError> {
        let text = lossy_text(body);
        let fields = Fields::read(&text);
        if !fields.is_error_answer() {
            return None;
        }
        let effective = fields.embedded_status().unwrap_or(200);
        Some(self.build(StatusCode::OK, effective, headers, &fields, &text))
    }

    /// Classifies one server-sent event of a `200 text/event-stream` answer: `event` is its
    /// `event:` name (if any), `data` its data. Returns the error it carries, or `None` for an
    /// ordinary event.
    ///
    /// An event is an error when it is named `error` (Anthropic, OpenAI Responses), its JSON
    /// has a non-null `error` member (OpenAI, Gemini, OpenRouter) or a `"type":"error"`, or a
    /// choice ends with `finish_reason: "error"`. A numeric `error.code` in the HTTP range
    /// (Gemini 503, OpenRouter 502) stands in for the status; an error that says nothing more
    /// is `Server`. `finish_reason: "content_filter"` is *not* an error: see the crate docs.
    ///
    /// ```
    /// use towline_core::ErrorKind;
    /// use towline_normalize::Classifier;
    ///
    /// let c = Classifier::now();
    /// let err = c.classify_sse_event(&http::HeaderMap::new(), Some("error"),
    ///     br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#).unwrap();
    /// assert_eq!(err.kind(), ErrorKind::Overloaded);
    /// assert!(c.classify_sse_event(&http::HeaderMap::new(), None, br#"{"choices":[{"delta":{"content":"hi"}}]}"#).is_none());
    /// ```
    pub fn classify_sse_event(
        &self,
        headers: &HeaderMap,
        event: Option<&str>,
        data: &[u8],
    ) -> Option<ApiError> {
        let named_error = event.is_some_and(|e| e.trim() == "error");
        let text = lossy_text(data);
        let fields = Fields::read(&text);
        if !(named_error || fields.is_error_answer() || fields.finish_reason_error) {
            return None;
        }
        let effective = fields.embedded_status().unwrap_or(200);
        let err = self.build(StatusCode::OK, effective, headers, &fields, &text);
        // The provider said "error" and nothing more: it failed mid-answer.
        Some(if err.kind() == ErrorKind::Unknown {
            err.with_kind(ErrorKind::Server)
        } else {
            err
        })
    }

    /// Builds the error: `status` is the real HTTP status, `effective` the one classification
    /// reads (an embedded code for HTTP-200 errors).
    fn build(
        &self,
        status: StatusCode,
        effective: u16,
        headers: &HeaderMap,
        fields: &Fields<'_>,
        text: &str,
    ) -> ApiError {
        let snapshot = self.snapshot(headers, fields);
        // The provider's message, else the plain-text body's.
        let message = match &fields.message {
            Some(m) => Cow::Borrowed(m.as_ref()),
            None => text_message(fields, text),
        };
        let header_hint = headers::retry_hint(headers, self.now);
        let hint = header_hint
            .or_else(|| body_hint(fields, &message))
            .or_else(|| reset_hint(snapshot.as_ref(), effective));
        let facts = Facts {
            status: effective,
            fields,
            message: &message,
            wording: OnceCell::new(),
            hint: hint.map(|h| h.delay),
            header_hint: header_hint.is_some(),
            snapshot: snapshot.as_ref(),
        };
        let kind = decide(&facts);

        let mut err = ApiError::new(kind, status);
        if let Some(t) = &fields.provider_type {
            err = err.with_provider_type(t.as_ref());
        }
        if let Some(c) = &fields.code {
            err = err.with_provider_code(c.as_ref());
        }
        // A provider's message is never empty; a plain-text body may be.
        if !message.is_empty() {
            err = err.with_message(scrub::redact_with(&message, self.credential).as_ref());
        }
        if let Some(p) = &fields.param {
            err = err.with_param(scrub::redact_with(p, self.credential).as_ref());
        }
        let request_id = fields
            .request_id
            .as_deref()
            .or_else(|| headers::request_id(headers));
        if let Some(id) = request_id {
            err = err.with_request_id(id);
        }
        if let Some(hint) = hint {
            err = err.with_retry_hint(hint);
        }
        if let Some(should) = headers::should_retry(headers) {
            err = err.with_should_retry(should);
        }
        if let Some(snapshot) = snapshot {
            err = err.with_rate_limit(snapshot);
        }
        err
    }

    /// Rate-limit headers, plus OpenRouter's copy of them in `error.metadata.headers`.
    fn snapshot(&self, headers: &HeaderMap, fields: &Fields<'_>) -> Option<RateLimitSnapshot> {
        let mut now = LazyNow::Fixed(self.now);
        let mut builder = SnapshotBuilder::default();
        builder.offer_all(headers, &mut now);
        if let Some(raw) = fields.meta_headers
            && let Ok(map) = serde_json::from_str::<
                std::collections::BTreeMap<Cow<'_, str>, &serde_json::value::RawValue>,
            >(raw.get())
        {
            for (name, value) in map {
                if let Some(value) = dialect::text(value) {
                    builder.offer(&name.to_ascii_lowercase(), &value, &mut now);
                }
            }
        }
        builder.finish()
    }
}

/// The body as text, invalid UTF-8 replaced by U+FFFD. Valid UTF-8 (nearly every body) is
/// borrowed after `str::from_utf8`'s word-at-a-time ASCII check, which is several times cheaper
/// than `String::from_utf8_lossy`'s chunk-by-chunk walk; the result is the same.
fn lossy_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The body's own retry hint: a structured field, else a delay written in `message` (the
/// provider's message, else the plain-text body's).
fn body_hint(fields: &Fields<'_>, message: &str) -> Option<RetryHint> {
    fields
        .body_delay
        .or_else(|| parse::message_delay(message))
        .map(|d| RetryHint::new(d, HintSource::Body))
}

/// When a rate-limited answer says nothing else, the reset of its exhausted window.
fn reset_hint(snapshot: Option<&RateLimitSnapshot>, status: u16) -> Option<RetryHint> {
    if status != 429 {
        return None;
    }
    snapshot?
        .exhausted_until()
        .filter(|d| !d.is_zero())
        .map(|d| RetryHint::new(d, HintSource::RateLimitReset))
}

/// The message of a body that is not a JSON error: short plain text, never HTML nor a piece
/// of cut JSON.
fn text_message<'t>(fields: &Fields<'_>, text: &'t str) -> Cow<'t, str> {
    let trimmed = text.trim();
    if fields.shape != Shape::Text || trimmed.starts_with(['<', '{', '[']) {
        return Cow::Borrowed("");
    }
    dialect::truncate(Cow::Borrowed(trimmed), MAX_TEXT_MESSAGE)
}

/// Everything the decision reads.
struct Facts<'f, 'a> {
    status: u16,
    fields: &'f Fields<'a>,
    /// The message (or the plain-text body), as sent: the phrase scan folds ASCII case.
    message: &'f str,
    wording: OnceCell<Wording>,
    hint: Option<Duration>,
    header_hint: bool,
    snapshot: Option<&'f RateLimitSnapshot>,
}

impl Facts<'_, '_> {
    /// What the message says, scanned once, on the first question.
    fn wording(&self) -> Wording {
        *self.wording.get_or_init(|| wording::scan(self.message))
    }

    /// The Gemini dialect words every 429 as a quota; only its `quotaId` tells.
    fn is_gemini(&self) -> bool {
        self.fields.grpc_status.is_some()
    }
}

/// The decision order of the dialect reference; see the module docs.
fn decide(f: &Facts<'_, '_>) -> ErrorKind {
    let s = f.status;
    if matches!(s, 408 | 504 | 522 | 524) {
        return ErrorKind::Timeout;
    }
    if let Some(code) = f.fields.negative_code
        && let Some(kind) = kimi_free_api(code)
    {
        return kind;
    }

    let token = token_class(f.fields);
    let strong = token
        .filter(|(_, strength)| *strength == Strength::Strong)
        .map(|(k, _)| k);

    // A body too large for the provider stays too large, whatever it is called (Groq sends a
    // 413 typed as a TPM rate limit when one request exceeds the whole per-minute budget).
    if s == 413 {
        return match strong {
            Some(ErrorKind::ContextLengthExceeded) => ErrorKind::ContextLengthExceeded,
            _ => ErrorKind::PayloadTooLarge,
        };
    }

    // Quota before rate limit.
    if strong == Some(ErrorKind::QuotaExhausted) || f.fields.per_day_quota {
        return ErrorKind::QuotaExhausted;
    }
    if s == 402 && !f.header_hint {
        return ErrorKind::QuotaExhausted;
    }
    let rate_like =
        strong == Some(ErrorKind::RateLimited) || (strong.is_none() && matches!(s, 429 | 402));
    if (rate_like || matches!(s, 403 | 429)) && !f.is_gemini() && f.wording().says_quota() {
        return ErrorKind::QuotaExhausted;
    }
    if strong.is_none() && s == 429 && f.wording().says_overloaded() {
        return ErrorKind::Overloaded;
    }
    if rate_like {
        let long_hint = f.hint.is_some_and(|h| h > QUOTA_HINT);
        let no_quota = f
            .snapshot
            .is_some_and(|snap| snap.requests.limit == Some(0) || snap.tokens.limit == Some(0));
        return if long_hint || no_quota {
            ErrorKind::QuotaExhausted
        } else {
            ErrorKind::RateLimited
        };
    }

    // Context length and content filter before the generic 400.
    let wording_applies = matches!(s, 400 | 403 | 421 | 422 | 451) || !is_http_error(s);
    if strong == Some(ErrorKind::ContextLengthExceeded)
        || (strong.is_none() && wording_applies && s != 403 && f.wording().says_context_length())
    {
        return ErrorKind::ContextLengthExceeded;
    }
    if strong == Some(ErrorKind::ContentFiltered)
        || (s == 403 && f.fields.moderation)
        || (strong.is_none() && wording_applies && f.wording().says_content_filter())
        || (s == 421 && f.fields.shape != Shape::Text)
    {
        return ErrorKind::ContentFiltered;
    }

    // Overloaded before the generic 429/5xx.
    if strong == Some(ErrorKind::Overloaded) || matches!(s, 529 | 498) {
        return ErrorKind::Overloaded;
    }
    if (s >= 500 || !is_http_error(s)) && f.wording().says_overloaded() {
        return ErrorKind::Overloaded;
    }

    if let Some(kind) = strong {
        return kind;
    }
    if let Some(kind) = status_class(s) {
        return kind;
    }
    token.map_or(ErrorKind::Unknown, |(kind, _)| kind)
}

fn is_http_error(status: u16) -> bool {
    (400..=599).contains(&status)
}

/// kimi-free-api's code table.
fn kimi_free_api(code: i64) -> Option<ErrorKind> {
    Some(match code {
        -1000 | -2001 => ErrorKind::Server,
        -1001 | -2000 | -2003 => ErrorKind::InvalidRequest,
        -1002 => ErrorKind::NotFound,
        -2002 => ErrorKind::Authentication,
        -2004 => ErrorKind::PayloadTooLarge,
        -2005 => ErrorKind::RateLimited,
        -2006 => ErrorKind::QuotaExhausted,
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Strength {
    /// Says exactly what happened; wins over the status.
    Strong,
    /// Says only the family (`server_error`, `invalid_request_error`); used when the status
    /// says nothing.
    Weak,
}

/// The class the provider's own words give: code first (it is the more specific), then inner
/// code, then type, then Gemini's status.
fn token_class(fields: &Fields<'_>) -> Option<(ErrorKind, Strength)> {
    // Zhipu's codes are digits, sent as a string or a number, inside an `error` object
    // (Mistral's flat `"code": "1300"` is another table).
    let zhipu = fields.shape == Shape::Nested
        && fields
            .code
            .as_deref()
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
    let candidates = [
        fields.code.as_deref().map(|c| (c, zhipu)),
        fields.inner_code.as_deref().map(|c| (c, false)),
        fields.provider_type.as_deref().map(|c| (c, false)),
        fields.grpc_status.as_deref().map(|c| (c, false)),
    ];
    let mut weak = None;
    for (token, numeric_table) in candidates.into_iter().flatten() {
        let found = if numeric_table {
            zhipu_code(token).map(|k| (k, Strength::Strong))
        } else {
            word_class(token)
        };
        match found {
            Some((kind, Strength::Strong)) => return Some((kind, Strength::Strong)),
            Some(weak_found) if weak.is_none() => weak = Some(weak_found),
            _ => {}
        }
    }
    weak
}

/// Zhipu GLM's numeric codes (inside an `error` object).
fn zhipu_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "1113" | "1308" => ErrorKind::QuotaExhausted,
        "1301" => ErrorKind::ContentFiltered,
        "1302" | "1303" => ErrorKind::RateLimited,
        _ => return None,
    })
}

/// Provider types and codes, compared case-insensitively.
fn word_class(token: &str) -> Option<(ErrorKind, Strength)> {
    use ErrorKind::*;
    use Strength::*;
    // Lowercased on the stack: every known word is short, and a longer token is none of them.
    let trimmed = token.trim().as_bytes();
    let mut buf = [0_u8; 48];
    let Some(lower) = buf.get_mut(..trimmed.len()) else {
        return long_word_class(token);
    };
    lower.copy_from_slice(trimmed);
    lower.make_ascii_lowercase();
    let Ok(word) = std::str::from_utf8(lower) else {
        return None;
    };
    let found = match word {
        "exceeded_current_quota_error"
        | "insufficient_quota"
        | "credit_balance_exhausted"
        | "organization_usage_limit_exceeded"
        | "quota_not_enough"
        | "quota_exceeded"
        | "billing_error"
        | "billing_hard_limit_reached"
        | "arrearage"
        | "insufficient_balance"
        | "insufficient_credits"
        | "payment_required" => (QuotaExhausted, Strong),
        w if w.ends_with("_spend_limit_exceeded") => (QuotaExhausted, Strong),
        "rate_limit_reached_error"
        | "rate_limit_error"
        | "rate_limit_exceeded"
        | "rate_limited"
        | "rate_limit"
        | "too_many_requests"
        | "resource_exhausted"
        | "requests"
        | "tokens" => (RateLimited, Strong),
        w if w.starts_with("throttling") => (RateLimited, Strong),
        "engine_overloaded_error"
        | "overloaded_error"
        | "server_is_overloaded"
        | "server_overloaded"
        | "model_overloaded"
        | "overloaded" => (Overloaded, Strong),
        "context_length_exceeded" | "context_window_exceeded" | "model_context_window_exceeded" => {
            (ContextLengthExceeded, Strong)
        }
        "content_filter"
        | "content_filtered"
        | "content_policy_violation"
        | "data_inspection_failed"
        | "datainspectionfailed"
        | "responsibleaipolicyviolation"
        | "moderation_blocked" => (ContentFiltered, Strong),
        "invalid_authentication_error"
        | "incorrect_api_key_error"
        | "authentication_error"
        | "authentication_failed"
        | "invalid_api_key"
        | "invalidapikey"
        | "unauthenticated"
        | "unauthorized"
        | "token_expired" => (Authentication, Strong),
        "permission_denied" | "permission_error" | "forbidden" | "forbidden_error" => {
            (PermissionDenied, Strong)
        }
        "resource_not_found_error"
        | "model_not_found"
        | "not_found_error"
        | "not_found"
        | "task_not_found"
        | "context_not_found"
        | "modelnotfound" => (NotFound, Strong),
        "conflict_error" | "conflict" | "duplicate_id" => (Conflict, Strong),
        "payload_too_large" | "request_too_large" | "request_entity_too_large" => {
            (PayloadTooLarge, Strong)
        }
        "timeout" | "deadline_exceeded" | "request_timeout" => (Timeout, Strong),
        "server_error"
        | "internal_error"
        | "internal_server_error"
        | "internal"
        | "api_error"
        | "service_unavailable"
        | "server_unavailable"
        | "unavailable" => (Server, Weak),
        "invalid_request_error"
        | "invalid_request"
        | "invalid_argument"
        | "invalid_parameter"
        | "invalidparameter"
        | "bad_request"
        | "missing_field"
        | "invalid_role"
        | "failed_precondition" => (InvalidRequest, Weak),
        _ => return None,
    };
    Some(found)
}

/// [`word_class`] of a token too long for its buffer: only the `_spend_limit_exceeded` and
/// `throttling` patterns match words of any length.
fn long_word_class(token: &str) -> Option<(ErrorKind, Strength)> {
    let lower = token.trim().to_ascii_lowercase();
    if lower.ends_with("_spend_limit_exceeded") {
        Some((ErrorKind::QuotaExhausted, Strength::Strong))
    } else if lower.starts_with("throttling") {
        Some((ErrorKind::RateLimited, Strength::Strong))
    } else {
        None
    }
}

/// What the status alone says.
fn status_class(status: u16) -> Option<ErrorKind> {
    use ErrorKind::*;
    Some(match status {
        400 | 405 | 406 | 411 | 415 | 422 => InvalidRequest,
        401 | 407 => Authentication,
        402 => QuotaExhausted,
        403 | 451 => PermissionDenied,
        404 | 410 => NotFound,
        408 | 504 | 522 | 524 => Timeout,
        409 => Conflict,
        413 => PayloadTooLarge,
        429 => RateLimited,
        498 | 529 => Overloaded,
        // 421 without a provider body is a misdirected request, and 499 a closed client.
        421 | 499 => return None,
        400..=499 => InvalidRequest,
        500..=599 => Server,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str) -> ErrorKind {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
        )
        .kind()
    }

    #[test]
    fn order_of_decisions() {
        // Quota before rate limit, on 429 and 403.
        let quota = r#"{"error":{"type":"exceeded_current_quota_error","message":"m"}}"#;
        assert_eq!(kind(429, quota), ErrorKind::QuotaExhausted);
        assert_eq!(kind(403, quota), ErrorKind::QuotaExhausted);
        // Overloaded on a 429.
        let busy = r#"{"error":{"type":"engine_overloaded_error","message":"busy"}}"#;
        assert_eq!(kind(429, busy), ErrorKind::Overloaded);
        // Context length before the generic 400.
        let long =
            r#"{"error":{"type":"invalid_request_error","message":"Input token length too long"}}"#;
        assert_eq!(kind(400, long), ErrorKind::ContextLengthExceeded);
        // Timeout first, whatever the body.
        assert_eq!(kind(504, quota), ErrorKind::Timeout);
        // Generic type on a specific status: the status wins.
        let generic404 = r#"{"error":{"type":"invalid_request_error","message":"no such model"}}"#;
        assert_eq!(kind(404, generic404), ErrorKind::NotFound);
    }

    #[test]
    fn openai_rate_limit_linking_billing_is_not_quota() {
        let body = r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29876, Requested 1234. Please try again in 2.22s. You can increase your rate limit by adding a payment method at https://platform.openai.com/account/billing.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        let err = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            body.as_bytes(),
        );
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(err.retry_after(), Some(Duration::from_millis(2220)));
    }

    #[test]
    fn word_classes_of_long_tokens_and_any_case() {
        let long = "x".repeat(60);
        assert_eq!(
            word_class(&format!(" {long}_SPEND_LIMIT_EXCEEDED ")),
            Some((ErrorKind::QuotaExhausted, Strength::Strong))
        );
        assert_eq!(
            word_class(&format!("Throttling{long}")),
            Some((ErrorKind::RateLimited, Strength::Strong))
        );
        assert_eq!(word_class(&long), None);
        assert_eq!(
            word_class(" Rate_Limit_Exceeded\t"),
            Some((ErrorKind::RateLimited, Strength::Strong))
        );
        assert_eq!(
            word_class("model_context_window_exceeded"),
            Some((ErrorKind::ContextLengthExceeded, Strength::Strong))
        );
        assert_eq!(word_class("令牌"), None);
    }

    #[test]
    fn status_fallbacks() {
        assert_eq!(kind(500, ""), ErrorKind::Server);
        assert_eq!(kind(418, ""), ErrorKind::InvalidRequest);
        assert_eq!(kind(421, "misdirected"), ErrorKind::Unknown);
        assert_eq!(kind(302, ""), ErrorKind::Unknown);
        assert_eq!(
            kind(200, r#"{"error":{"type":"server_error"}}"#),
            ErrorKind::Server
        );
        assert_eq!(kind(502, "<html>Bad Gateway</html>"), ErrorKind::Server);
    }

    #[test]
    fn html_is_not_a_message_but_plain_text_is() {
        let html = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>502</html>",
        );
        assert_eq!(html.message(), None);
        let plain = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            b"upstream overloaded\n",
        );
        assert_eq!(plain.message(), Some("upstream overloaded"));
        assert_eq!(plain.kind(), ErrorKind::Overloaded);
    }
}
