//! The error-body and header classifier: `towline_normalize::classify`, `classify_ok_body`,
//! `Classifier::classify_sse_event`, `retry_hint`, the `headers` readers and the `parse`
//! helpers, on anything a provider (or a proxy in front of it) could send.
//!
//! Input: an HTTP answer written as text, so that seeds are readable and mutations stay close
//! to real answers:
//!
//! ```text
//! 429                               status line (digits; anything else reads as 500)
//! retry-after: 1                    response headers, one per line
//! credential: sk-fuzz-0123456789    (pseudo-header: the request's key, scrubbed from messages)
//! event: error                      (pseudo-header: the SSE event name for classify_sse_event)
//!                                   blank line
//! {"error":{...}}                   body, any bytes
//! ```
//!
//! Checked besides "never panics":
//! - the error keeps the HTTP status it was given, and is never a local decision;
//! - a rate limit never carries a hint longer than `QUOTA_HINT` (it would be a quota), except
//!   kimi-free-api's -2005, whose code decides first;
//! - the request's credential (8 bytes or more) never appears in the message or the param;
//! - `Display`, `Debug` and `user_message` work.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use towline_core::{ApiError, ErrorKind};
use towline_normalize::{Classifier, QUOTA_HINT, classify_ok_body, headers, parse, retry_hint};

struct Answer<'a> {
    status: StatusCode,
    headers: HeaderMap,
    values: Vec<&'a str>,
    credential: Option<&'a [u8]>,
    event: Option<&'a str>,
    body: &'a [u8],
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn read(data: &[u8]) -> Answer<'_> {
    let (status_line, mut rest) = split_line(data);
    let status = std::str::from_utf8(status_line.trim_ascii())
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = Answer {
        status,
        headers: HeaderMap::new(),
        values: Vec::new(),
        credential: None,
        event: None,
        body: &[],
    };
    loop {
        let (line, after) = split_line(rest);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            answer.body = after;
            break;
        }
        rest = after;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            match name {
                b"credential" => answer.credential = Some(value),
                b"event" => answer.event = std::str::from_utf8(value).ok(),
                _ => {
                    if let (Ok(name), Ok(value)) =
                        (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                    {
                        answer.headers.append(name, value);
                    }
                }
            }
            if let Ok(value) = std::str::from_utf8(value) {
                answer.values.push(value);
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    answer
}

fn check(err: &ApiError, status: StatusCode, credential: Option<&[u8]>) {
    assert_eq!(err.status(), status, "the status is kept");
    assert!(
        !err.kind().is_local(),
        "a provider answer is never a local decision"
    );
    let kimi_code = err.provider_code().is_some_and(|c| c.starts_with('-'));
    if err.kind() == ErrorKind::RateLimited && !kimi_code {
        assert!(
            err.retry_after().is_none_or(|h| h <= QUOTA_HINT),
            "a rate limit with a hint over {QUOTA_HINT:?} is a quota: {err:?}"
        );
    }
    // Keys are visible ASCII (a header value that is not UTF-8 is no API key); one made of
    // the replacement text itself cannot be told apart from it.
    let credential = credential
        .filter(|c| c.len() >= 8)
        .and_then(|c| std::str::from_utf8(c).ok());
    if let Some(credential) = credential {
        if !credential.contains('[') && !credential.contains(']') {
            for (field, text) in [("message", err.message()), ("param", err.param())] {
                assert!(
                    !text.is_some_and(|t| t.contains(credential)),
                    "the credential leaked into the {field}: {err:?}"
                );
            }
        }
    }
    let _ = (err.to_string(), format!("{err:?}"), err.user_message());
    let _ = (err.is_retryable(), err.kind().is_provider_failure());
}

fuzz_target!(|data: &[u8]| {
    let answer = read(data);
    let nows = [
        SystemTime::now(),
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(1_767_225_600), // 2026-01-01
        UNIX_EPOCH + Duration::from_secs(253_402_300_799), // 9999-12-31
    ];
    for now in nows {
        let mut classifier = Classifier::new(now);
        if let Some(credential) = answer.credential {
            classifier = classifier.with_credential(credential);
        }
        let err = classifier.classify(answer.status, &answer.headers, answer.body);
        check(&err, answer.status, answer.credential);

        if let Some(err) = classifier.classify_ok_body(&answer.headers, answer.body) {
            check(&err, StatusCode::OK, answer.credential);
        }
        if let Some(err) = classifier.classify_sse_event(&answer.headers, answer.event, answer.body)
        {
            check(&err, StatusCode::OK, answer.credential);
            assert_ne!(
                err.kind(),
                ErrorKind::Unknown,
                "an in-band error is at least Server"
            );
        }
        let _ = retry_hint(&answer.headers, answer.body, now);
        let _ = headers::retry_hint(&answer.headers, now);
        let _ = headers::rate_limit_snapshot(&answer.headers, now).map(|s| s.exhausted_until());
        for value in &answer.values {
            let _ = parse::retry_after(value, now);
            let _ = parse::reset(value, now);
        }
    }
    let _ = classify_ok_body(&answer.headers, answer.body);
    let _ = headers::should_retry(&answer.headers);
    let _ = headers::request_id(&answer.headers);
    for value in &answer.values {
        let _ = parse::go_duration(value);
        let _ = parse::rfc3339(value);
        let _ = parse::message_delay(value);
    }
    let _ = parse::message_delay(&String::from_utf8_lossy(answer.body));
});
