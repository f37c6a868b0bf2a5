//! Metric values after a scripted run, on paused time so that durations are exact.

use std::time::Duration;

use http_body_util::BodyExt;
use tower::{Layer, ServiceExt};
use towline_core::{CircuitState, Error, ErrorKind, Event, StopReason, ThrottleReason};
use towline_trace::names;

use crate::support::*;

const KEY: &str = "sk-metric-test-0123456789";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(start_paused = true)]
async fn metric_values_after_a_scripted_run() {
    let otel = Otel::new();
    let trace = otel.layer();
    let attempts = trace.attempt_layer();

    // Call 1: queued 1 s, throttled 250 ms, a 503 then a success (each attempt 200 ms).
    let call_1 = trace.layer(stand_in(
        vec![
            Step::Wait(
                secs(1_000),
                Event::SessionWaited {
                    waited: secs(1_000),
                },
            ),
            Step::Wait(secs(250), Event::ThrottleWaited { waited: secs(250) }),
            Step::Attempt,
            Step::Wait(
                secs(100),
                Event::RetryScheduled {
                    attempt: 1,
                    delay: secs(100),
                    reason: ErrorKind::Server,
                },
            ),
            Step::Attempt,
        ],
        attempts.layer(provider(
            vec![Answer::Err(server_error), ok("req-1")],
            secs(200),
            Seen::default(),
        )),
    ));
    // Call 2: throttled 750 ms, then the key's quota is gone (not retried).
    let call_2 = trace.layer(stand_in(
        vec![
            Step::Wait(secs(750), Event::ThrottleWaited { waited: secs(750) }),
            Step::Attempt,
            Step::Emit(Event::KeyPaused {
                key: None,
                pause: Duration::from_secs(3600),
                cause: ErrorKind::QuotaExhausted,
            }),
            Step::Emit(Event::RetryStopped {
                attempts: 1,
                reason: StopReason::NotRetryable,
            }),
        ],
        attempts.layer(provider(
            vec![Answer::Err(quota)],
            secs(200),
            Seen::default(),
        )),
    ));
    // Call 3: the breaker opens and cuts it off.
    let call_3 = trace.layer(stand_in(
        vec![
            Step::Emit(Event::BreakerTransition {
                from: CircuitState::Closed,
                to: CircuitState::Open,
            }),
            Step::Emit(Event::BreakerRejected {
                retry_after: Duration::from_secs(30),
            }),
            Step::Fail(|| Error::circuit_open(Duration::from_secs(30))),
        ],
        attempts.layer(provider(vec![], secs(200), Seen::default())),
    ));
    // Call 4: the throttle refuses to wait, and learned a slower rate.
    let call_4 = trace.layer(stand_in(
        vec![
            Step::Emit(Event::RateLearned {
                key: Some(towline_core::KeyHash::of(b"sk-metric-key")),
                per_second: 2.5,
            }),
            Step::Emit(Event::ThrottleRejected {
                reason: ThrottleReason::WaitTooLong,
                retry_after: Some(Duration::from_secs(9)),
            }),
            Step::Fail(|| {
                Error::throttled(ThrottleReason::WaitTooLong, Some(Duration::from_secs(9)))
            }),
        ],
        attempts.layer(provider(vec![], secs(200), Seen::default())),
    ));

    let resp = call_1.oneshot(chat_request(KEY)).await.unwrap();
    resp.into_body().collect().await.unwrap();
    assert_eq!(
        call_2.oneshot(chat_request(KEY)).await.unwrap_err().kind(),
        ErrorKind::QuotaExhausted
    );
    assert_eq!(
        call_3.oneshot(chat_request(KEY)).await.unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(
        call_4.oneshot(chat_request(KEY)).await.unwrap_err().kind(),
        ErrorKind::Throttled
    );

    let points = otel.points();
    let server = [
        (names::SERVER_ADDRESS, "api.moonshot.ai"),
        (names::SERVER_PORT, "443"),
    ];

    // Calls by error class.
    let calls =
        |with: &[(&str, &str)], without: &[&str]| point(&points, names::CALLS, with, without).value;
    assert_eq!(
        calls(
            &[(names::GEN_AI_REQUEST_MODEL, "kimi-k2")],
            &[names::ERROR_TYPE]
        ),
        1.0
    );
    for class in ["quota_exhausted", "circuit_open", "throttled"] {
        assert_eq!(calls(&[(names::ERROR_TYPE, class)], &[]), 1.0, "{class}");
    }
    assert_eq!(points_where(&points, names::CALLS, &server, &[]).len(), 4);

    // Attempt durations: three attempts of 200 ms, with the semconv buckets.
    let http =
        |with: &[(&str, &str)]| point(&points, names::HTTP_CLIENT_REQUEST_DURATION, with, &[]);
    let ok = http(&[(names::HTTP_RESPONSE_STATUS_CODE, "200")]);
    assert_eq!((ok.count, ok.value), (1, 0.2));
    assert_eq!(ok.bounds, names::HTTP_DURATION_BUCKETS);
    assert_eq!(
        ok.attrs.get(names::HTTP_REQUEST_METHOD).map(String::as_str),
        Some("POST")
    );
    assert_eq!(
        ok.attrs.get(names::SERVER_ADDRESS).map(String::as_str),
        Some("api.moonshot.ai")
    );
    let failed = http(&[
        (names::ERROR_TYPE, "server"),
        (names::HTTP_RESPONSE_STATUS_CODE, "503"),
    ]);
    assert_eq!(failed.count, 1);
    let quota = http(&[(names::ERROR_TYPE, "quota_exhausted")]);
    assert_eq!(quota.count, 1);

    // Call durations: everything the call waited for.
    let op = |with: &[(&str, &str)], without: &[&str]| {
        point(
            &points,
            names::GEN_AI_CLIENT_OPERATION_DURATION,
            with,
            without,
        )
    };
    let first = op(
        &[(names::GEN_AI_OPERATION_NAME, "chat")],
        &[names::ERROR_TYPE],
    );
    assert_eq!(first.count, 1);
    assert!(
        close(first.value, 1.0 + 0.25 + 0.2 + 0.1 + 0.2),
        "{}",
        first.value
    );
    assert_eq!(first.bounds, names::GEN_AI_DURATION_BUCKETS);
    assert!(close(
        op(&[(names::ERROR_TYPE, "quota_exhausted")], &[]).value,
        0.95
    ));
    assert!(close(
        op(&[(names::ERROR_TYPE, "circuit_open")], &[]).value,
        0.0
    ));

    // Decisions.
    let retries = point(
        &points,
        names::RETRIES,
        &[(names::ERROR_TYPE, "server")],
        &[],
    );
    assert_eq!(retries.value, 1.0);
    let stops = point(
        &points,
        names::RETRY_STOPS,
        &[(names::RETRY_STOP_REASON, "not_retryable")],
        &[],
    );
    assert_eq!(stops.value, 1.0);
    let waits = point(&points, names::THROTTLE_WAIT, &server, &[]);
    assert_eq!(waits.count, 2);
    assert!(close(waits.value, 1.0));
    let session = point(&points, names::SESSION_WAIT, &server, &[]);
    assert_eq!((session.count, session.value), (1, 1.0));
    let pauses = point(
        &points,
        names::THROTTLE_PAUSES,
        &[(names::THROTTLE_CAUSE, "quota_exhausted")],
        &[],
    );
    assert_eq!(pauses.value, 1.0);
    let refused = point(
        &points,
        names::THROTTLE_REJECTIONS,
        &[(names::THROTTLE_REASON, "wait_too_long")],
        &[],
    );
    assert_eq!(refused.value, 1.0);
    let learned = point(&points, names::THROTTLE_LEARNED_RATE, &server, &[]);
    assert_eq!(learned.value, 2.5);
    // A gauge per key, labelled with the key's digest and never the key.
    let digest = towline_core::KeyHash::of(b"sk-metric-key").to_string();
    assert_eq!(
        learned.attrs.get(names::THROTTLE_KEY).map(String::as_str),
        Some(digest.as_str())
    );
    assert_eq!(
        point(&points, names::BREAKER_REJECTIONS, &server, &[]).value,
        1.0
    );
    for (state, value) in [("open", 1.0), ("closed", 0.0), ("half_open", 0.0)] {
        let gauge = point(
            &points,
            names::BREAKER_STATE_GAUGE,
            &[(names::BREAKER_STATE, state)],
            &[],
        );
        assert_eq!(gauge.value, value, "{state}");
        assert_eq!(
            gauge.attrs.get(names::SERVER_ADDRESS).map(String::as_str),
            Some("api.moonshot.ai")
        );
    }
}

#[tokio::test]
async fn metric_instruments_are_not_created_when_metrics_are_off() {
    let otel = Otel::new();
    let trace = otel.builder().metrics(false).build().unwrap();
    let svc = trace.layer(trace.attempt_layer().layer(provider(
        vec![ok("r")],
        secs(0),
        Seen::default(),
    )));
    let resp = svc.oneshot(chat_request(KEY)).await.unwrap();
    resp.into_body().collect().await.unwrap();
    assert!(otel.points().is_empty());
    assert_eq!(otel.finished_spans().len(), 2, "spans still flow");
}
