//! Reading every provider's error JSON into one set of borrowed fields.
//!
//! Why `&RawValue` everywhere: every field is deserialized as "any JSON value, kept as its raw
//! text", so a field of the wrong type (`"code": 1302` vs `"1302"`, `message` as an object)
//! never fails the parse, and nothing is allocated until a value is actually used. Strings
//! without escapes are borrowed straight from the body.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::parse;

/// Longest message kept; providers' messages are sentences, anything longer is noise.
pub(crate) const MAX_MESSAGE: usize = 2048;

type Raw<'a> = Option<&'a RawValue>;

/// The top level of an error body, in any dialect.
#[derive(Deserialize, Default)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: Raw<'a>,
    #[serde(borrow)]
    code: Raw<'a>,
    #[serde(borrow)]
    errcode: Raw<'a>,
    #[serde(borrow)]
    message: Raw<'a>,
    #[serde(borrow)]
    errmsg: Raw<'a>,
    #[serde(borrow)]
    msg: Raw<'a>,
    #[serde(borrow)]
    detail: Raw<'a>,
    #[serde(borrow, rename = "type")]
    kind: Raw<'a>,
    #[serde(borrow)]
    object: Raw<'a>,
    #[serde(borrow)]
    param: Raw<'a>,
    #[serde(borrow)]
    request_id: Raw<'a>,
    #[serde(borrow)]
    data: Raw<'a>,
    #[serde(borrow)]
    choices: Raw<'a>,
}

/// The `error` object of the OpenAI-shaped dialects (and Anthropic, Gemini, OpenRouter, ...).
#[derive(Deserialize, Default)]
struct ErrorObject<'a> {
    #[serde(borrow)]
    message: Raw<'a>,
    #[serde(borrow, rename = "type")]
    kind: Raw<'a>,
    #[serde(borrow)]
    code: Raw<'a>,
    #[serde(borrow)]
    param: Raw<'a>,
    #[serde(borrow)]
    status: Raw<'a>,
    #[serde(borrow)]
    request_id: Raw<'a>,
    #[serde(borrow)]
    details: Raw<'a>,
    #[serde(borrow)]
    metadata: Raw<'a>,
    #[serde(borrow)]
    innererror: Raw<'a>,
}

/// One entry of Gemini's `error.details`.
#[derive(Deserialize)]
struct GeminiDetail<'a> {
    #[serde(borrow, rename = "@type")]
    kind: Raw<'a>,
    #[serde(borrow, rename = "retryDelay")]
    retry_delay: Raw<'a>,
    #[serde(borrow)]
    violations: Raw<'a>,
}

#[derive(Deserialize)]
struct GeminiViolation<'a> {
    #[serde(borrow, rename = "quotaId")]
    quota_id: Raw<'a>,
}

/// OpenRouter's `error.metadata`.
#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    headers: Raw<'a>,
    #[serde(borrow)]
    reasons: Raw<'a>,
    #[serde(borrow)]
    flagged_input: Raw<'a>,
}

#[derive(Deserialize)]
struct InnerError<'a> {
    #[serde(borrow)]
    code: Raw<'a>,
}

#[derive(Deserialize)]
struct AiapiData<'a> {
    #[serde(borrow)]
    retry_after: Raw<'a>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    finish_reason: Raw<'a>,
}

/// Which family of body shapes the fields came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Shape {
    /// Not JSON (or not an object): plain text, HTML, nothing.
    #[default]
    Text,
    /// `{"error": {...}}` or `{"error": "..."}`: OpenAI and everything shaped like it.
    Nested,
    /// Fields at the top level: aiapi, Mistral, kimi-free-api, DashScope native, Responses API
    /// stream errors.
    Flat,
}

/// What an error body said, in any dialect. Borrowed from the body where possible.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    pub(crate) shape: Shape,
    /// The body has an `error` member that is not null, or a top-level `"type":"error"`.
    pub(crate) has_error_member: bool,
    pub(crate) provider_type: Option<Cow<'a, str>>,
    /// Numeric codes as their decimal text.
    pub(crate) code: Option<Cow<'a, str>>,
    pub(crate) message: Option<Cow<'a, str>>,
    pub(crate) param: Option<Cow<'a, str>>,
    pub(crate) request_id: Option<Cow<'a, str>>,
    /// Gemini's canonical status (`RESOURCE_EXHAUSTED`); its presence marks the Gemini dialect.
    pub(crate) grpc_status: Option<Cow<'a, str>>,
    /// kimi-free-api: a numeric `code`/`errcode` below zero.
    pub(crate) negative_code: Option<i64>,
    /// Gemini `RetryInfo.retryDelay` or aiapi `data.retry_after`.
    pub(crate) body_delay: Option<Duration>,
    /// Gemini `QuotaFailure` with a `quotaId` containing `PerDay`.
    pub(crate) per_day_quota: bool,
    /// Azure `innererror.code`.
    pub(crate) inner_code: Option<Cow<'a, str>>,
    /// OpenRouter moderation metadata (`reasons`, `flagged_input`).
    pub(crate) moderation: bool,
    /// OpenRouter `metadata.headers`, raw, read later as rate-limit headers.
    pub(crate) meta_headers: Option<&'a RawValue>,
    /// A stream chunk with `choices[].finish_reason == "error"`.
    pub(crate) finish_reason_error: bool,
}

impl<'a> Fields<'a> {
    /// Reads `text` as an error body of any dialect. Never fails: a body that is not a JSON
    /// object gives `Shape::Text` and no fields.
    pub(crate) fn read(text: &'a str) -> Fields<'a> {
        let trimmed = text.trim_start();
        let envelope = match trimmed.as_bytes().first() {
            Some(b'{') => serde_json::from_str::<Envelope<'a>>(trimmed).ok(),
            // Gemini sometimes wraps the error in an array.
            Some(b'[') => serde_json::from_str::<Vec<&'a RawValue>>(trimmed)
                .ok()
                .and_then(|items| items.into_iter().next())
                .and_then(|first| serde_json::from_str::<Envelope<'a>>(first.get()).ok()),
            _ => None,
        };
        match envelope {
            Some(envelope) => Fields::from_envelope(envelope),
            None => Fields::default(),
        }
    }

    fn from_envelope(env: Envelope<'a>) -> Fields<'a> {
        let mut f = Fields {
            request_id: env.request_id.and_then(text),
            finish_reason_error: env.choices.is_some_and(has_error_finish),
            ..Fields::default()
        };
        let top_type = env.kind.and_then(text);
        match env.error.map(|raw| (raw, raw.get().as_bytes().first())) {
            Some((raw, Some(b'{'))) => {
                f.shape = Shape::Nested;
                f.has_error_member = true;
                let obj = serde_json::from_str::<ErrorObject<'a>>(raw.get()).unwrap_or_default();
                f.read_error_object(obj);
                // Anthropic's `{"type":"error","error":{...}}`: the inner type is the one.
            }
            Some((raw, Some(b'"'))) => {
                // `{"error": "message"}` (some gateways, HuggingFace-style).
                f.shape = Shape::Nested;
                f.has_error_member = true;
                f.message = text(raw);
                f.provider_type = top_type.clone();
            }
            _ => {
                f.shape = Shape::Flat;
                f.has_error_member = top_type.as_deref() == Some("error");
                f.provider_type = top_type.filter(|t| t != "error");
                let code = env.errcode.or(env.code);
                f.read_code(code);
                f.message = [env.message, env.errmsg, env.msg, env.detail]
                    .into_iter()
                    .flatten()
                    .find_map(message_text);
                f.param = env.param.and_then(text);
                f.body_delay = env
                    .data
                    .and_then(|d| serde_json::from_str::<AiapiData<'a>>(d.get()).ok())
                    .and_then(|d| d.retry_after)
                    .and_then(delay_value);
                // Mistral marks errors with `"object": "error"`.
                if env.object.and_then(text).as_deref() == Some("error") {
                    f.has_error_member = true;
                }
            }
        }
        f
    }

    fn read_error_object(&mut self, obj: ErrorObject<'a>) {
        self.provider_type = obj.kind.and_then(text).filter(|t| t != "error");
        self.read_code(obj.code);
        self.message = obj.message.and_then(message_text);
        self.param = obj.param.and_then(text);
        self.grpc_status = obj.status.and_then(text).filter(|s| !is_numeric(s));
        if self.request_id.is_none() {
            self.request_id = obj.request_id.and_then(text);
        }
        if let Some(details) = obj.details {
            self.read_gemini_details(details);
        }
        if let Some(meta) = obj
            .metadata
            .and_then(|m| serde_json::from_str::<Metadata<'a>>(m.get()).ok())
        {
            self.moderation = meta.reasons.is_some() || meta.flagged_input.is_some();
            self.meta_headers = meta.headers;
        }
        self.inner_code = obj
            .innererror
            .and_then(|i| serde_json::from_str::<InnerError<'a>>(i.get()).ok())
            .and_then(|i| i.code)
            .and_then(text);
    }

    fn read_code(&mut self, code: Raw<'a>) {
        let Some(raw) = code else { return };
        let is_number = raw
            .get()
            .starts_with(|c: char| c == '-' || c.is_ascii_digit());
        self.code = text(raw);
        if is_number && raw.get().starts_with('-') {
            // Huge negative numbers still mark an error; they just map to no known code.
            self.negative_code = Some(raw.get().parse::<i64>().unwrap_or(i64::MIN));
        }
    }

    fn read_gemini_details(&mut self, details: &'a RawValue) {
        let Ok(items) = serde_json::from_str::<Vec<&'a RawValue>>(details.get()) else {
            return;
        };
        for item in items {
            let Ok(detail) = serde_json::from_str::<GeminiDetail<'a>>(item.get()) else {
                continue;
            };
            let kind = detail.kind.and_then(text).unwrap_or_default();
            if kind.ends_with("RetryInfo")
                && let Some(delay) = detail.retry_delay.and_then(delay_value)
            {
                self.body_delay = Some(delay);
            }
            if kind.ends_with("QuotaFailure") {
                let violations = detail
                    .violations
                    .and_then(|v| serde_json::from_str::<Vec<&'a RawValue>>(v.get()).ok())
                    .unwrap_or_default();
                self.per_day_quota |= violations.iter().any(|v| {
                    serde_json::from_str::<GeminiViolation<'_>>(v.get())
                        .ok()
                        .and_then(|v| v.quota_id)
                        .and_then(text)
                        .is_some_and(|id| id.contains("PerDay"))
                });
            }
        }
    }

    /// Whether the body, read as a successful JSON answer, is really an error: kimi-free-api's
    /// negative `code`/`errcode`, or a non-null `error` member.
    pub(crate) fn is_error_answer(&self) -> bool {
        self.negative_code.is_some() || self.has_error_member
    }

    /// A numeric `code` in the HTTP status range (Gemini `"code": 503`, OpenRouter `"code":
    /// 429`, Azure `"code": "429"`), used as the status when the real one is 200 (streams).
    pub(crate) fn embedded_status(&self) -> Option<u16> {
        let code = self.code.as_deref()?;
        code.parse::<u16>().ok().filter(|c| (400..=599).contains(c))
    }
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The text of a JSON string (borrowed when it has no escapes) or of a number (its decimal
/// text). Booleans, null, objects and arrays give `None`.
pub(crate) fn text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let json = raw.get();
    match json.as_bytes().first()? {
        b'"' => {
            let inner = &json[1..json.len() - 1];
            // memchr (SIMD) rather than `str::contains(char)`: every string field is checked.
            if memchr::memchr(b'\\', inner.as_bytes()).is_some() {
                serde_json::from_str::<String>(json).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        b'-' | b'0'..=b'9' => Some(Cow::Borrowed(json)),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

/// A message: a string or number as text; an object or array as its compact JSON (some
/// gateways nest the upstream error there), cut to [`MAX_MESSAGE`].
fn message_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let value = match raw.get().as_bytes().first()? {
        b'{' | b'[' => Cow::Borrowed(raw.get()),
        _ => text(raw)?,
    };
    Some(truncate(value, MAX_MESSAGE))
}

/// Cuts `s` to at most `max` bytes on a char boundary, marking the cut with `…`.
pub(crate) fn truncate(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = String::with_capacity(end + 3);
    cut.push_str(&s[..end]);
    cut.push('…');
    Cow::Owned(cut)
}

/// A delay given as seconds (`60`, `"60"`, `1.5`) or a protobuf/Go duration (`"26s"`).
fn delay_value(raw: &RawValue) -> Option<Duration> {
    let t = text(raw)?;
    parse::decimal(&t)
        .and_then(parse::seconds)
        .or_else(|| parse::go_duration(&t))
}

fn has_error_finish(choices: &RawValue) -> bool {
    if !choices.get().contains("error") {
        return false;
    }
    serde_json::from_str::<Vec<Choice<'_>>>(choices.get())
        .map(|cs| {
            cs.iter()
                .any(|c| c.finish_reason.and_then(text).as_deref() == Some("error"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_types_do_not_fail_the_parse() {
        let f = Fields::read(r#"{"error":{"code":1302,"message":{"nested":true},"type":7}}"#);
        assert_eq!(f.shape, Shape::Nested);
        assert_eq!(f.code.as_deref(), Some("1302"));
        assert_eq!(f.message.as_deref(), Some(r#"{"nested":true}"#));
        assert_eq!(f.provider_type.as_deref(), Some("7"));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let f = Fields::read(r#"{"error":{"message":"say \"hi\"\n"}}"#);
        assert_eq!(f.message.as_deref(), Some("say \"hi\"\n"));
    }

    #[test]
    fn gemini_array_and_details() {
        let f = Fields::read(
            r#"[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[
              {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
              {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}]"#,
        );
        assert_eq!(f.grpc_status.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(f.embedded_status(), Some(429));
        assert!(f.per_day_quota);
        assert_eq!(f.body_delay, Some(Duration::from_secs(26)));
    }

    #[test]
    fn kimi_free_api_both_forms() {
        let a = Fields::read(r#"{"errcode":-2002,"errmsg":"Token已失效","data":null}"#);
        assert_eq!(a.negative_code, Some(-2002));
        assert_eq!(a.message.as_deref(), Some("Token已失效"));
        let b = Fields::read(r#"{"code":-2001,"message":"请求失败","data":null}"#);
        assert_eq!(b.negative_code, Some(-2001));
        let ok = Fields::read(r#"{"errcode":0,"errmsg":"ok","data":{}}"#);
        assert!(!ok.is_error_answer());
        let huge = Fields::read(r#"{"code":-99999999999999999999999}"#);
        assert_eq!(huge.negative_code, Some(i64::MIN));
    }

    #[test]
    fn not_json_is_text() {
        for body in ["", "<html>502</html>", "{\"error\":", "null", "[]", "[1,2]"] {
            let f = Fields::read(body);
            assert!(!f.is_error_answer(), "{body}");
        }
    }

    #[test]
    fn openrouter_stream_error_chunk() {
        let f = Fields::read(
            r#"{"id":"gen-1","choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}],"error":{"code":502,"message":"Provider disconnected"}}"#,
        );
        assert!(f.finish_reason_error && f.has_error_member);
        assert_eq!(f.embedded_status(), Some(502));
    }
}
