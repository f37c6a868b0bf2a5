//! What providers say in response headers: retry hints, `x-should-retry`, request ids and
//! rate-limit windows.
//!
//! These work on any response, success or error, and are what the Normalize layer uses; they
//! are public so that other code (the `towline classify` command, a mock's tests, a custom
//! client) reads headers exactly the same way.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName};
#[cfg(test)]
use towline_core::RateLimitWindow;
use towline_core::{HintSource, RateLimitSnapshot, RetryHint};

use crate::parse;

/// The retry hint the headers give, by precedence: `retry-after-ms` (milliseconds, may be
/// fractional), then `Retry-After` (seconds, may be fractional, or an HTTP-date measured from
/// `now`). Unparsable values are skipped.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use towline_core::HintSource;
/// use towline_normalize::headers::retry_hint;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "20".parse().unwrap());
/// headers.insert("retry-after-ms", "1500.5".parse().unwrap());
/// let hint = retry_hint(&headers, SystemTime::now()).unwrap();
/// assert_eq!(hint.source, HintSource::RetryAfterMs);
/// assert_eq!(hint.delay, Duration::from_micros(1_500_500));
/// ```
pub fn retry_hint(headers: &HeaderMap, now: SystemTime) -> Option<RetryHint> {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text(&RETRY_AFTER_MS)
        .and_then(parse::decimal)
        .and_then(|ms| parse::seconds(ms / 1000.0))
    {
        return Some(RetryHint::new(ms, HintSource::RetryAfterMs));
    }
    text(&RETRY_AFTER)
        .and_then(|v| parse::retry_after(v, now))
        .map(|d| RetryHint::new(d, HintSource::RetryAfter))
}

// Header names as `HeaderName`s, not `&str`: a `&str` name is parsed and validated by `http`
// on every lookup, a `HeaderName` is only hashed.
static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
static X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The provider's `x-should-retry` header (`true`/`false`, any case), if present and valid.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-should-retry", "false".parse().unwrap());
/// assert_eq!(towline_normalize::headers::should_retry(&headers), Some(false));
/// ```
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(&X_SHOULD_RETRY)?.as_bytes().trim_ascii();
    if value.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if value.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// Request-id headers, best first. `cf-ray` is Cloudflare's trace id: useful, but only when the
/// provider sent nothing of its own.
pub(crate) static REQUEST_ID_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("request-id"),
    HeaderName::from_static("mistral-correlation-id"),
    HeaderName::from_static("cf-ray"),
];

/// The provider's request id from the headers: `x-request-id`, `request-id`,
/// `mistral-correlation-id`, else `cf-ray`. (The classifier prefers a `request_id` in the body,
/// which is what the provider's support asks for.)
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("cf-ray", "8c1f-SJC".parse().unwrap());
/// headers.insert("request-id", "req_018EeWyXxfu5pfWkrYcMdjWG".parse().unwrap());
/// assert_eq!(towline_normalize::headers::request_id(&headers), Some("req_018EeWyXxfu5pfWkrYcMdjWG"));
/// ```
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    REQUEST_ID_HEADERS.iter().find_map(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    })
}

/// The rate-limit state in `headers`, or `None` when the provider sent no rate-limit header.
///
/// Reads every form in the dialect reference: `x-ratelimit-{limit,remaining,reset}-{requests,
/// tokens}` (OpenAI, Groq, Azure, aiapi), their window-less forms `x-ratelimit-{limit,remaining,
/// reset}` (Kaiko, OpenRouter) as the requests window, Mistral-style suffixes
/// (`x-ratelimit-limit-tokens-minute`), and `anthropic-ratelimit-{requests,tokens,input-tokens,
/// output-tokens}-{limit,remaining,reset}`. Counts are integers (`-1` means unknown); resets are
/// Go durations (`6m0s`), delay seconds, epoch seconds, epoch milliseconds or RFC 3339 instants,
/// all turned into a delay from `now`. The exact `-requests`/`-tokens` names win over the
/// variants; among variants a limit of 0 (Mistral: "no quota") wins so it is never hidden.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use towline_normalize::headers::rate_limit_snapshot;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "6m0s".parse().unwrap());
/// headers.insert("x-ratelimit-limit-tokens", "-1".parse().unwrap());
/// let snapshot = rate_limit_snapshot(&headers, SystemTime::now()).unwrap();
/// assert_eq!(snapshot.requests.limit, Some(60));
/// assert_eq!(snapshot.requests.reset, Some(Duration::from_secs(360)));
/// assert_eq!(snapshot.tokens.limit, None);
/// assert_eq!(snapshot.exhausted_until(), Some(Duration::from_secs(360)));
/// ```
pub fn rate_limit_snapshot(headers: &HeaderMap, now: SystemTime) -> Option<RateLimitSnapshot> {
    snapshot_with(headers, &mut LazyNow::Fixed(now))
}

/// [`rate_limit_snapshot`] reading the wall clock only if a value needs it.
pub(crate) fn snapshot_with(headers: &HeaderMap, now: &mut LazyNow) -> Option<RateLimitSnapshot> {
    let mut builder = SnapshotBuilder::default();
    builder.offer_all(headers, now);
    builder.finish()
}

/// A wall clock read at most once, and only when a value needs it.
pub(crate) enum LazyNow {
    Fixed(SystemTime),
    Later(fn() -> SystemTime),
}

impl LazyNow {
    pub(crate) fn get(&mut self) -> SystemTime {
        match *self {
            LazyNow::Fixed(now) => now,
            LazyNow::Later(read) => {
                let now = read();
                *self = LazyNow::Fixed(now);
                now
            }
        }
    }
}

/// Cheap test run on every header name of every response: does it look like a rate-limit
/// header at all? Keeps the success path to one byte comparison per header.
#[inline]
fn may_be_rate_limit(name: &str) -> bool {
    matches!(name.as_bytes().first(), Some(b'x' | b'a'))
        && (name.starts_with("x-ratelimit-") || name.starts_with("anthropic-ratelimit-"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Limit,
    Remaining,
    Reset,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Window {
    Requests,
    Tokens,
}

/// How sure we are that a header is *the* value of a window: exact names beat variants.
type Rank = u8;
const EXACT: Rank = 2;
const VARIANT: Rank = 1;

#[derive(Default)]
pub(crate) struct SnapshotBuilder {
    snapshot: RateLimitSnapshot,
    /// Rank of the value stored for [window][field].
    rank: [[Rank; 3]; 2],
}

impl SnapshotBuilder {
    /// Offers every rate-limit header of `headers`. The name is tested before the value is
    /// checked for visible ASCII, so other headers cost one compare.
    #[inline]
    pub(crate) fn offer_all(&mut self, headers: &HeaderMap, now: &mut LazyNow) {
        for (name, value) in headers {
            if may_be_rate_limit(name.as_str())
                && let Ok(value) = value.to_str()
            {
                self.offer(name.as_str(), value, now);
            }
        }
    }

    /// Offers one header (name in lowercase); ignores anything that is not a rate-limit header.
    pub(crate) fn offer(&mut self, name: &str, value: &str, now: &mut LazyNow) {
        if !may_be_rate_limit(name) {
            return;
        }
        let Some((window, field, rank)) = classify_name(name) else {
            return;
        };
        let slot = &mut self.rank[window as usize][field as usize];
        let target = match window {
            Window::Requests => &mut self.snapshot.requests,
            Window::Tokens => &mut self.snapshot.tokens,
        };
        match field {
            Field::Limit | Field::Remaining => {
                let parsed = parse::count(value);
                let current = if field == Field::Limit {
                    &mut target.limit
                } else {
                    &mut target.remaining
                };
                let zero_limit = field == Field::Limit && parsed == Some(0);
                if parsed.is_some() && (rank > *slot || zero_limit) {
                    *current = parsed;
                    *slot = rank.max(*slot);
                }
            }
            Field::Reset => {
                if rank > *slot
                    && let Some(reset) = parse_reset(value, now)
                {
                    target.reset = Some(reset);
                    *slot = rank;
                }
            }
        }
    }

    pub(crate) fn finish(self) -> Option<RateLimitSnapshot> {
        (!self.snapshot.is_empty()).then_some(self.snapshot)
    }
}

fn parse_reset(value: &str, now: &mut LazyNow) -> Option<Duration> {
    // Only wall-clock forms need the time; Go durations and small delays do not.
    if let Some(d) = parse::go_duration(value) {
        return Some(d);
    }
    parse::reset(value, now.get())
}

/// Maps a (lowercase) header name to its window and field.
fn classify_name(name: &str) -> Option<(Window, Field, Rank)> {
    if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
        // anthropic-ratelimit-{requests|tokens|input-tokens|output-tokens}-{limit|remaining|reset}
        let (window_part, field_part) = rest.rsplit_once('-')?;
        let field = field_of(field_part)?;
        return match window_part {
            "requests" => Some((Window::Requests, field, EXACT)),
            "tokens" => Some((Window::Tokens, field, EXACT)),
            "input-tokens" | "output-tokens" => Some((Window::Tokens, field, VARIANT)),
            _ => None,
        };
    }
    let rest = name.strip_prefix("x-ratelimit-")?;
    let (field_part, window_part) = match rest.split_once('-') {
        Some((f, w)) => (f, Some(w)),
        None => (rest, None),
    };
    let field = field_of(field_part)?;
    match window_part {
        // Kaiko `X-RateLimit-Remaining`, OpenRouter `X-RateLimit-Reset`.
        None => Some((Window::Requests, field, VARIANT)),
        Some("requests") => Some((Window::Requests, field, EXACT)),
        Some("tokens") => Some((Window::Tokens, field, EXACT)),
        Some(w) if w.starts_with("req") => Some((Window::Requests, field, VARIANT)),
        Some(w) if w.starts_with("tok") => Some((Window::Tokens, field, VARIANT)),
        Some(_) => None,
    }
}

fn field_of(text: &str) -> Option<Field> {
    match text {
        "limit" => Some(Field::Limit),
        "remaining" => Some(Field::Remaining),
        "reset" => Some(Field::Reset),
        _ => None,
    }
}

/// Builds a window for tests and docs.
#[cfg(test)]
pub(crate) fn window(
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<Duration>,
) -> RateLimitWindow {
    RateLimitWindow {
        limit,
        remaining,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    #[test]
    fn no_rate_limit_headers_is_none() {
        let headers = map(&[("content-type", "application/json"), ("x-request-id", "r")]);
        assert_eq!(rate_limit_snapshot(&headers, UNIX_EPOCH), None);
    }

    #[test]
    fn anthropic_rfc3339_resets() {
        let now = UNIX_EPOCH + Duration::from_secs(1_713_562_500);
        let headers = map(&[
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2024-04-19T21:35:14Z"),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-tokens-limit", "80000"),
            ("anthropic-ratelimit-input-tokens-limit", "10"),
        ]);
        let s = rate_limit_snapshot(&headers, now).unwrap();
        assert_eq!(
            s.requests,
            window(Some(50), Some(49), Some(Duration::from_secs(14)))
        );
        assert_eq!(s.tokens.limit, Some(80_000));
    }

    #[test]
    fn window_less_forms_and_epochs() {
        let now = UNIX_EPOCH + Duration::from_secs(1_741_305_000);
        let headers = map(&[
            ("x-ratelimit-limit", "50"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1741305600000"),
        ]);
        let s = rate_limit_snapshot(&headers, now).unwrap();
        assert_eq!(
            s.requests,
            window(Some(50), Some(0), Some(Duration::from_secs(600)))
        );
    }

    #[test]
    fn mistral_zero_limit_is_never_hidden() {
        let headers = map(&[
            ("x-ratelimit-limit-tokens-minute", "500000"),
            ("x-ratelimit-limit-tokens-month", "0"),
        ]);
        let s = rate_limit_snapshot(&headers, UNIX_EPOCH).unwrap();
        assert_eq!(s.tokens.limit, Some(0));
        assert!(s.tokens.is_exhausted());
    }

    #[test]
    fn garbage_values_are_ignored() {
        let headers = map(&[
            ("x-ratelimit-limit-requests", "lots"),
            ("x-ratelimit-reset-requests", "whenever"),
            ("x-ratelimit-bogus-requests", "1"),
        ]);
        assert_eq!(rate_limit_snapshot(&headers, UNIX_EPOCH), None);
    }

    #[test]
    fn lazy_clock_is_read_once_and_only_when_needed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static READS: AtomicUsize = AtomicUsize::new(0);
        fn read() -> SystemTime {
            READS.fetch_add(1, Ordering::Relaxed);
            UNIX_EPOCH
        }
        let mut b = SnapshotBuilder::default();
        let mut now = LazyNow::Later(read);
        b.offer("x-ratelimit-reset-requests", "1s", &mut now);
        assert_eq!(READS.load(Ordering::Relaxed), 0);
        b.offer("x-ratelimit-reset-tokens", "1741305600", &mut now);
        b.offer("x-ratelimit-reset", "1741305600", &mut now);
        assert_eq!(READS.load(Ordering::Relaxed), 1);
    }
}
