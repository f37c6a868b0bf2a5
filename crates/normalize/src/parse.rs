//! Parsers for the time and number forms providers put in headers and messages.
//!
//! Every function here is total: it returns `None` for anything it does not understand, never
//! panics, and never allocates. Conversions from wall-clock instants (HTTP-dates, epoch
//! timestamps, RFC 3339) take the current time as a parameter so that callers (and tests) decide
//! what "now" is.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Epoch values above this are milliseconds (year 2286 in seconds, 1973 in milliseconds).
const EPOCH_MILLIS_ABOVE: f64 = 1.0e12;
/// Plain numbers above this are epoch seconds rather than a delay (about 1973 as an epoch; a
/// delay of 3 years is never meant).
const EPOCH_SECONDS_ABOVE: f64 = 1.0e8;

/// Parses a Go-style duration as OpenAI and Groq send them: `1s`, `6m0s`, `12ms`, `2m59.56s`,
/// `1h2m3.5s`, `150us`, `0s`. A bare number is not a Go duration.
///
/// ```
/// use std::time::Duration;
/// use towline_normalize::parse::go_duration;
///
/// assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(go_duration("2m59.56s"), Some(Duration::from_millis(179_560)));
/// assert_eq!(go_duration("12ms"), Some(Duration::from_millis(12)));
/// assert_eq!(go_duration("60"), None);
/// ```
pub fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = trim(text).as_bytes();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number = number_value(&rest[..number_len])?;
        rest = &rest[number_len..];
        let unit_len = rest
            .iter()
            .position(|b| b.is_ascii_digit() || *b == b'.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            b"h" => 3600.0,
            b"m" => 60.0,
            b"s" => 1.0,
            b"ms" => 1e-3,
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1e-6, // us, µs (micro sign), μs (mu)
            b"ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    seconds(total)
}

/// `str::trim`, with a fast path for the usual value: `trim_ascii` (bytes, no UTF-8 decoding)
/// gives the same slice whenever what it stops at on both ends is ASCII other than the vertical
/// tab (which `char::is_whitespace` trims and `u8::is_ascii_whitespace` does not).
pub(crate) fn trim(text: &str) -> &str {
    let fast = text.trim_ascii();
    let stops = |b: Option<&u8>| b.is_none_or(|b| b.is_ascii() && *b != 0x0b);
    if stops(fast.as_bytes().first()) && stops(fast.as_bytes().last()) {
        fast
    } else {
        text.trim()
    }
}

/// The value of a run of digits and dots, as `f64::from_str` gives it. Up to 15 digits without
/// a dot are an integer below 2^53, which converts exactly, so no float parsing is needed.
fn number_value(digits: &[u8]) -> Option<f64> {
    if digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let n = digits
            .iter()
            .fold(0_u64, |n, d| n * 10 + u64::from(d - b'0'));
        return Some(n as f64);
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A non-negative, finite number of seconds as a `Duration`.
pub(crate) fn seconds(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// A plain decimal number (`60`, `1.5`), rejecting what `f64::from_str` accepts beyond that
/// (`inf`, `NaN`, `1e3`).
pub(crate) fn decimal(text: &str) -> Option<f64> {
    let text = trim(text);
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && digits.bytes().any(|b| b.is_ascii_digit());
    if plain { text.parse().ok() } else { None }
}

/// Parses a `Retry-After` value: delay seconds (fractions allowed) or an HTTP-date, which is
/// turned into a delay from `now` (zero if it is already past).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use towline_normalize::parse::retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
/// assert_eq!(retry_after("1.5", now), Some(Duration::from_millis(1500)));
/// assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
/// assert_eq!(retry_after("soon", now), None);
/// ```
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Some(secs) = decimal(value) {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(trim(value)).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Parses a rate-limit reset value in any form providers use, as a delay from `now`:
/// a Go duration (`6m0s`), delay seconds (`30`, `0.5`), epoch seconds (`1640995200`), epoch
/// milliseconds (`1741305600000`), an RFC 3339 instant (`2024-04-19T21:35:14Z`) or an HTTP-date.
/// Instants already past give zero.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use towline_normalize::parse::reset;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_640_995_140);
/// assert_eq!(reset("1640995200", now), Some(Duration::from_secs(60)));
/// assert_eq!(reset("1640995200000", now), Some(Duration::from_secs(60)));
/// assert_eq!(reset("2022-01-01T00:00:00Z", now), Some(Duration::from_secs(60)));
/// assert_eq!(reset("1m0s", now), Some(Duration::from_secs(60)));
/// assert_eq!(reset("60", now), Some(Duration::from_secs(60)));
/// ```
pub fn reset(value: &str, now: SystemTime) -> Option<Duration> {
    let value = trim(value);
    if let Some(number) = decimal(value) {
        if number < 0.0 {
            return None;
        }
        let at = if number > EPOCH_MILLIS_ABOVE {
            UNIX_EPOCH.checked_add(seconds(number / 1000.0)?)?
        } else if number > EPOCH_SECONDS_ABOVE {
            UNIX_EPOCH.checked_add(seconds(number)?)?
        } else {
            return seconds(number);
        };
        return Some(at.duration_since(now).unwrap_or_default());
    }
    if let Some(d) = go_duration(value) {
        return Some(d);
    }
    let at = rfc3339(value).or_else(|| httpdate::parse_http_date(value).ok())?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Parses an RFC 3339 timestamp (`2024-04-19T21:35:14Z`, `2024-04-19T21:35:14.250+08:00`).
/// Instants before 1970 are rejected.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use towline_normalize::parse::rfc3339;
///
/// assert_eq!(rfc3339("1970-01-02T00:00:01Z"), Some(UNIX_EPOCH + Duration::from_secs(86_401)));
/// assert_eq!(rfc3339("1970-01-01T08:00:00.5+08:00"), Some(UNIX_EPOCH + Duration::from_millis(500)));
/// assert_eq!(rfc3339("yesterday"), None);
/// ```
pub fn rfc3339(text: &str) -> Option<SystemTime> {
    let b = trim(text).as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(nanos).ok()?))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Finds a delay written in a provider's message: "Please try again in 23.5s", "try again in
/// 1m26.4s", "Please retry after 6 seconds", "please try again after 1 seconds", "retry in 500ms".
///
/// ```
/// use std::time::Duration;
/// use towline_normalize::parse::message_delay;
///
/// assert_eq!(message_delay("Rate limit reached. Please try again in 23.5s."), Some(Duration::from_millis(23_500)));
/// assert_eq!(message_delay("Please retry after 6 seconds."), Some(Duration::from_secs(6)));
/// assert_eq!(message_delay("try again later"), None);
/// ```
pub fn message_delay(message: &str) -> Option<Duration> {
    const CUES: [&[u8]; 5] = [
        b"try again in ",
        b"try again after ",
        b"retry after ",
        b"retry in ",
        b"retry-after: ",
    ];
    let bytes = message.as_bytes();
    for cue in CUES {
        let mut from = 0;
        while let Some(at) = find_ignore_ascii_case(&bytes[from..], cue) {
            let start = from + at + cue.len();
            if let Some(delay) = delay_at(&message[start..]) {
                return Some(delay);
            }
            from = start;
        }
    }
    None
}

/// Parses "23.5s", "1m26.4s", "6 seconds", "2 minutes", "500ms", "20" (seconds) at the start of
/// `text`.
fn delay_at(text: &str) -> Option<Duration> {
    let token_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == 'µ'))
        .unwrap_or(text.len());
    let token = text[..token_len].trim_end_matches('.');
    if !token.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if let Some(d) = go_duration(token) {
        return Some(d);
    }
    let number = decimal(token)?;
    let after = text[token_len..].trim_start();
    let word_len = after
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(after.len());
    let scale = match after[..word_len].to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        _ => 1.0,
    };
    seconds(number * scale)
}

/// Case-insensitive (ASCII) substring search; `needle` must be lowercase.
pub(crate) fn find_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Parses a rate-limit count (`60`, `-1`); negative values (Azure's "unknown") give `None`.
pub(crate) fn count(value: &str) -> Option<u64> {
    let value = trim(value);
    if let Ok(n) = value.parse::<u64>() {
        return Some(n);
    }
    // "60.0" from some gateways; "-1" and garbage are unknown.
    decimal(value)
        .filter(|n| *n >= 0.0 && n.fract() == 0.0 && *n <= u64::MAX as f64)
        .map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("0s"), Some(Duration::ZERO));
        assert_eq!(go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(go_duration("150us"), Some(Duration::from_micros(150)));
        assert_eq!(go_duration("7.66s"), Some(Duration::from_millis(7660)));
        for bad in ["", "s", "1x", "1.2.3s", "-1s", "1 s", "ms"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_rejects_non_finite_and_negative() {
        let now = SystemTime::UNIX_EPOCH;
        for bad in ["inf", "NaN", "-5", "1e3", "", "   "] {
            assert_eq!(retry_after(bad, now), None, "{bad}");
        }
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn http_date_in_the_past_is_zero() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn rfc3339_rejects_bad_fields() {
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0800",
            "1969-12-31T23:59:59Z",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
        assert!(rfc3339("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn message_delays() {
        assert_eq!(
            message_delay("Please try again in 1m26.4s. Visit ..."),
            Some(Duration::from_millis(86_400))
        );
        assert_eq!(
            message_delay("please try again after 1 seconds"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            message_delay("Retry after 2 minutes"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            message_delay("retry in 500ms"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(message_delay("try again in a moment"), None);
        assert_eq!(message_delay("Try again in"), None);
    }

    #[test]
    fn counts() {
        assert_eq!(count("60"), Some(60));
        assert_eq!(count("-1"), None);
        assert_eq!(count("60.0"), Some(60));
        assert_eq!(count("abc"), None);
        assert_eq!(count("99999999999999999999999"), None);
    }

    proptest! {
        #[test]
        fn fast_trim_is_str_trim(s in "[ \t\n\r\x0b\x0c\u{a0}\u{3000}\u{85}a0.]{0,8}") {
            prop_assert_eq!(trim(&s), s.trim());
        }

        #[test]
        fn integer_fast_path_is_f64_parse(s in "[0-9]{1,17}(\\.[0-9]{0,4})?") {
            prop_assert_eq!(number_value(s.as_bytes()), s.parse::<f64>().ok());
        }

        #[test]
        fn rfc3339_agrees_with_httpdate(secs in 0u64..253_402_300_799) {
            let at = UNIX_EPOCH + Duration::from_secs(secs);
            let http = httpdate::HttpDate::from(at);
            // Re-render the same instant as RFC 3339 from httpdate's broken-down fields.
            let text = httpdate::fmt_http_date(at);
            let parsed_http = httpdate::parse_http_date(&text).unwrap();
            prop_assert_eq!(parsed_http, at);
            let _ = http;
            let days = secs / 86_400;
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days(days as i64);
            let rfc = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60);
            prop_assert_eq!(rfc3339(&rfc), Some(at));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,64}") {
            let now = SystemTime::now();
            let _ = go_duration(&s);
            let _ = retry_after(&s, now);
            let _ = reset(&s, now);
            let _ = rfc3339(&s);
            let _ = message_delay(&s);
            let _ = count(&s);
        }
    }

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (if m <= 2 { y + 1 } else { y }, m, d)
    }
}
