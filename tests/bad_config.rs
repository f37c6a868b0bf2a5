//! Every builder refuses nonsense when it is built, with an error that names the setting:
//! zero or non-finite rates, zero durations where a duration must pass, ratios outside their
//! range, empty names, NaN. One setting at a time, everything else left at its default, so
//! each rejection is the builder's own check and not a side effect of another one.
//!
//! A setting that is merely unusual but meaningful (a queue depth of 0: refuse busy sessions;
//! a probe time of a day) is accepted, and a few such edges are checked too, so that the
//! validation does not simply refuse everything.
#![cfg(all(feature = "stack", feature = "mock"))]

use std::fmt::Display;
use std::time::Duration;

use towline::breaker::BreakerLayer;
use towline::core::KeyHash;
use towline::mock::{MockProvider, Scenario};
use towline::normalize::NormalizeLayer;
use towline::retry::{RetryBudget, RetryLayer, TimeoutLayer};
use towline::session::SessionLayer;
use towline::throttle::store::redis::RedisStore;
use towline::throttle::{Adaptive, Quota, ThrottleLayer};
use towline::trace::TraceLayer;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

/// A configuration error that says which setting it refuses.
trait Named: Display {
    fn named(&self) -> &str;
}

macro_rules! named_by_setting {
    ($($error:ty),*) => {$(
        impl Named for $error {
            fn named(&self) -> &str {
                self.setting()
            }
        }
    )*};
}

named_by_setting!(
    towline::normalize::ConfigError,
    towline::retry::ConfigError,
    towline::breaker::ConfigError,
    towline::throttle::ConfigError,
    towline::session::ConfigError
);

impl Named for towline::mock::ScriptError {
    fn named(&self) -> &str {
        self.field()
    }
}

/// The trace layer's error is an enum whose text starts with the setting.
impl Named for towline::trace::ConfigError {
    fn named(&self) -> &str {
        let text = self.to_string();
        ["provider_name", "body_peek_limit", "keep_query_value"]
            .into_iter()
            .find(|s| text.starts_with(s))
            .unwrap_or("(none)")
    }
}

/// `built` must fail with an error naming `setting`, both as its setting and in its text.
#[track_caller]
fn check<T, E: Named>(built: Result<T, E>, setting: &str) {
    match built {
        Ok(_) => panic!("`{setting}`: nonsense was accepted"),
        Err(err) => {
            assert_eq!(err.named(), setting, "wrong setting named: {err}");
            assert!(
                err.to_string().contains(setting),
                "the message must name `{setting}`: {err}"
            );
        }
    }
}

#[test]
fn normalize_rejects_each_nonsense_setting() {
    let b = NormalizeLayer::builder;
    check(b().error_body_limit(0).build(), "error_body_limit");
    check(b().error_body_limit(64 << 20).build(), "error_body_limit");
    check(
        b().error_body_timeout(Duration::ZERO).build(),
        "error_body_timeout",
    );
    check(b().ok_json_limit(0).build(), "ok_json_limit");
    check(b().ok_json_limit(usize::MAX).build(), "ok_json_limit");
    check(b().sse_line_limit(0).build(), "sse_line_limit");
    check(b().sse_line_limit(63).build(), "sse_line_limit");
    check(b().sse_peek_limit(0).build(), "sse_peek_limit");

    // Edges that mean something.
    assert!(b().error_body_limit(1).sse_line_limit(64).build().is_ok());
    assert!(b().error_body_timeout(Duration::MAX).build().is_ok());
}

#[test]
fn retry_rejects_each_nonsense_setting() {
    let b = RetryLayer::builder;
    for ratio in [-0.1, 1.000_001, 1.5, NAN, INF, -INF] {
        check(b().budget_ratio(ratio).build(), "budget_ratio");
    }
    // A budget that can never allow a retry is a contradiction (max_retries(0) says it).
    check(
        b().budget_ratio(0.0).budget_floor(0).build(),
        "budget_ratio",
    );
    check(b().budget_floor(2_000_000).build(), "budget_floor");
    for ttl in [Duration::ZERO, 500 * MS, 1500 * MS, 2 * 3600 * SEC] {
        check(b().budget_ttl(ttl).build(), "budget_ttl");
    }
    check(b().backoff_base(Duration::ZERO).build(), "backoff_base");
    check(
        b().backoff_base(2 * SEC).backoff_max(SEC).build(),
        "backoff_max",
    );
    check(
        b().max_retry_after(Duration::ZERO).build(),
        "max_retry_after",
    );
    check(b().deadline(Duration::ZERO).build(), "deadline");

    let budget = |ratio, floor, ttl| RetryBudget::new(ratio, floor, ttl).map(|_| ());
    check(budget(NAN, 10, SEC), "budget_ratio");
    check(budget(2.0, 10, SEC), "budget_ratio");
    check(budget(0.2, 10, Duration::ZERO), "budget_ttl");

    // Edges that mean something: no floor with a ratio, a ratio of 1, no retries at all.
    assert!(b().budget_ratio(1.0).budget_floor(0).build().is_ok());
    assert!(b().max_retries(0).replay_limit(0).build().is_ok());
    assert!(b().deadline(Duration::MAX).build().is_ok());
}

#[test]
fn timeout_rejects_a_zero_timeout() {
    check(TimeoutLayer::new(Duration::ZERO), "timeout");
    check(
        towline::Stack::new().attempt_timeout(Duration::ZERO),
        "timeout",
    );
    assert!(TimeoutLayer::new(Duration::from_nanos(1)).is_ok());
}

#[test]
fn breaker_rejects_each_nonsense_setting() {
    let b = BreakerLayer::builder;
    check(b().window(Duration::ZERO, 10).build(), "window");
    check(b().window(10 * SEC, 0).build(), "window");
    check(b().window(5 * MS, 10).build(), "window");
    check(b().window(2 * 86_400 * SEC, 10).build(), "window");
    for ratio in [0.0, -0.5, 1.01, NAN, INF] {
        check(b().failure_ratio(ratio).build(), "failure_ratio");
    }
    check(b().min_calls(0).build(), "min_calls");
    check(b().consecutive_failures(0).build(), "consecutive_failures");
    check(b().open_duration(Duration::ZERO).build(), "open_duration");
    check(
        b().open_duration(60 * SEC)
            .max_open_duration(30 * SEC)
            .build(),
        "max_open_duration",
    );
    for growth in [0.0, 0.5, NAN, INF, 1_000.0] {
        check(b().open_growth(growth).build(), "open_growth");
    }
    check(b().half_open_probes(0).build(), "half_open_probes");
    check(b().half_open_probes(1 << 20).build(), "half_open_probes");
    check(b().probe_successes(0).build(), "probe_successes");
    check(b().idle_timeout(SEC).build(), "idle_timeout");

    assert!(
        b().consecutive_failures(None)
            .open_growth(1.0)
            .build()
            .is_ok()
    );
}

#[test]
fn throttle_rejects_each_nonsense_setting() {
    let b = ThrottleLayer::builder;
    for rate in [0.0, -1.0, NAN, INF, 2e9] {
        check(b().rate(rate).build(), "rate");
    }
    check(b().per_minute(0.0).build(), "rate");
    check(b().rate(10.0).burst(0).build(), "burst");
    check(b().burst(5).build(), "burst");
    let key = || KeyHash::of(b"sk-batch");
    check(
        b().key_quota(key(), Quota::new(0.0, 1)).build(),
        "key_quota",
    );
    check(
        b().key_quota(key(), Quota::new(NAN, 1)).build(),
        "key_quota",
    );
    check(
        b().key_quota(key(), Quota::new(1.0, 0)).build(),
        "key_quota",
    );
    check(b().max_wait(Duration::MAX).build(), "max_wait");
    let adaptive = |a: Adaptive| b().adaptive(a).build();
    for floor in [0.0, -1.0, NAN, INF] {
        check(adaptive(Adaptive::default().floor(floor)), "adaptive.floor");
    }
    check(
        adaptive(Adaptive::default().floor(5.0).ceiling(1.0)),
        "adaptive.ceiling",
    );
    check(
        adaptive(Adaptive::default().ceiling(NAN)),
        "adaptive.ceiling",
    );
    for decrease in [0.0, 1.0, 1.5, NAN] {
        check(
            adaptive(Adaptive::default().decrease(decrease)),
            "adaptive.decrease",
        );
    }
    for growth in [0.0, -1.0, NAN, INF] {
        check(
            adaptive(Adaptive::default().growth(growth)),
            "adaptive.growth",
        );
    }
    for share in [-0.1, 0.5, 1.0, NAN] {
        check(
            adaptive(Adaptive::default().max_background(share)),
            "adaptive.max_background",
        );
    }
    check(
        adaptive(Adaptive::default().forget_after(Duration::ZERO)),
        "adaptive.forget_after",
    );

    assert!(
        b().rate(1e-3)
            .burst(1)
            .max_wait(Duration::ZERO)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn redis_store_rejects_each_nonsense_setting() {
    // Nothing connects while building: no server is needed to check the settings.
    let b = || RedisStore::<KeyHash>::builder(redis::Client::open("redis://127.0.0.1:1/").unwrap());
    check(b().prefix("").build(), "prefix");
    check(b().timeout(Duration::ZERO).build(), "timeout");
    check(b().probe_every(Duration::ZERO).build(), "probe_every");
    check(b().warn_every(Duration::ZERO).build(), "warn_every");
    for share in [0.0, -0.5, 1.5, NAN, INF] {
        check(b().fallback_share(share).build(), "fallback_share");
    }
    assert!(b().fallback_share(1.0).build().is_ok());
}

#[test]
fn session_rejects_each_nonsense_setting() {
    let b = SessionLayer::builder;
    check(b().max_wait(Duration::ZERO).build(), "max_wait");
    check(b().session_header("").build(), "session_header");
    check(b().session_header("x session").build(), "session_header");
    check(b().session_header("x-session\n").build(), "session_header");

    // Zero waiting places is meaningful: refuse a turn while another one runs.
    assert!(b().max_queue_depth(0).no_max_wait().build().is_ok());
}

#[test]
fn trace_rejects_each_nonsense_setting() {
    let b = || TraceLayer::builder().metrics(false);
    check(b().provider_name("").build(), "provider_name");
    check(b().provider_name("Open AI").build(), "provider_name");
    check(b().provider_name("x".repeat(65)).build(), "provider_name");
    check(
        b().body_peek_limit(towline::trace::MAX_BODY_PEEK_LIMIT + 1)
            .build(),
        "body_peek_limit",
    );
    check(b().keep_query_value("").build(), "keep_query_value");
    check(b().keep_query_value("a=b").build(), "keep_query_value");
    // Credential-carrying parameters can never be kept in clear.
    for credential in ["key", "api-key", "access_token", "KEY"] {
        check(b().keep_query_value(credential).build(), "keep_query_value");
    }
    assert!(b().body_peek_limit(0).build().is_ok());
}

#[test]
fn mock_scenario_rejects_each_nonsense_setting() {
    let toml = |text: &str| Scenario::from_toml_str(text);
    let json = |text: &str| Scenario::from_json_str(text);

    check(toml("[default]\nlatency_ms = -5\n"), "default.latency_ms");
    check(toml("[default]\nlatency_ms = nan\n"), "default.latency_ms");
    check(toml("[default]\nchunks = 0\n"), "default.chunks");
    check(
        toml("[default]\ndialect = \"klingon\"\n"),
        "default.dialect",
    );
    check(
        toml("[default]\nrate_limit = { rate = 0.0, burst = 1 }\n"),
        "default.rate_limit.rate",
    );
    check(
        toml("[default]\nrate_limit = { rate = nan, burst = 1 }\n"),
        "default.rate_limit.rate",
    );
    check(
        toml("[default]\nrate_limit = { rate = 1.0, burst = 0 }\n"),
        "default.rate_limit.burst",
    );
    check(
        toml("[default]\nrate_limit = { limit = 0, window_ms = 1000 }\n"),
        "default.rate_limit.limit",
    );
    check(
        toml("[default]\nrate_limit = { limit = 5, window_ms = 0 }\n"),
        "default.rate_limit.window_ms",
    );
    for p in ["1.5", "-0.1", "nan", "inf"] {
        check(
            toml(&format!(
                "[default]\nfaults = [{{ class = \"server\", p = {p} }}]\n"
            )),
            "default.faults[0].p",
        );
    }
    check(
        json(r#"{"default":{"faults":[{"class":"server","p":2}]}}"#),
        "default.faults[0].p",
    );
    check(
        toml("[default]\nfaults = [{ class = \"server\", first = 0 }]\n"),
        "default.faults[0].first",
    );
    check(
        toml("[default]\nfaults = [{ class = \"server\", from_ms = 3000, until_ms = 1000 }]\n"),
        "default.faults[0].until_ms",
    );
    check(
        toml("[default]\nfaults = [{ class = \"server\", latency_ms = -1 }]\n"),
        "default.faults[0].latency_ms",
    );
    check(
        toml("[default]\nfaults = [{ fault = \"endless_stream\", interval_ms = 0 }]\n"),
        "default.faults[0].interval_ms",
    );
    check(
        toml("[default]\nfaults = [{ class = \"throttled\" }]\n"),
        "default.faults[0].class",
    );
    check(
        toml("[default]\nfaults = [{ class = \"server\", status = 99 }]\n"),
        "default.faults[0].status",
    );
    check(toml("[[scripts]]\nkey = \"\"\n"), "scripts[0].key");
    check(toml("[[scripts]]\nsession = \" \"\n"), "scripts[0].session");

    // The server's own options.
    let server = |name: &str| {
        MockProvider::builder()
            .record_header(name)
            .build()
            .map(|_| ())
    };
    check(server(""), "record_headers[4]");
    check(server("authorization"), "record_headers[4]");
}

/// The largest settings the builders accept are safe at request time too: no overflow when a
/// deadline, a timeout or a provider's hint is added to the clock, whatever the provider says.
#[tokio::test(start_paused = true)]
async fn extreme_accepted_settings_never_panic_at_request_time() {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use tower::{ServiceExt, service_fn};
    use towline::{Error, ErrorKind, ReplayBody, Stack};

    // Hints around and beyond what a clock can add: 1e11 s, 1e19 s (past `Instant`'s range,
    // within `Duration`'s), and one `Duration` cannot hold; on a rate limit (a quota, then) and
    // on a 503 (maintenance: retried after the hint).
    let rate_limited: &'static [u8] =
        br#"{"error":{"type":"rate_limit_reached_error","message":"slow down"}}"#;
    let cases = [
        "99999999999",
        "10000000000000000000",
        "99999999999999999999",
    ]
    .into_iter()
    .flat_map(|hint| [(hint, 429, rate_limited), (hint, 503, &b"{}"[..])]);
    for (hint, status, body) in cases {
        let client = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| async move {
            let response = Response::builder()
                .status(status)
                .header("retry-after", hint)
                .body(Full::new(Bytes::from_static(body)))
                .unwrap();
            Ok::<_, Error>(response)
        });
        let svc = Stack::new()
            .retry(
                RetryLayer::builder()
                    .max_retry_after(Duration::MAX)
                    .backoff_max(Duration::MAX)
                    .deadline(Duration::MAX)
                    .build()
                    .unwrap(),
            )
            .throttle(ThrottleLayer::builder().wait_forever().build().unwrap())
            .session(SessionLayer::builder().no_max_wait().build().unwrap())
            .breaker(
                BreakerLayer::builder()
                    .open_duration(86_400 * SEC)
                    .max_open_duration(86_400 * SEC)
                    .build()
                    .unwrap(),
            )
            .attempt_timeout(Duration::MAX)
            .unwrap()
            .normalize(
                NormalizeLayer::builder()
                    .error_body_timeout(Duration::MAX)
                    .build()
                    .unwrap(),
            )
            .service(client);
        let request = || {
            Request::post("https://api.example.com/v1/chat/completions")
                .header("authorization", "Bearer sk-extreme-0123456789")
                .header("x-session-id", "s1")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap()
        };
        for _ in 0..2 {
            let called = tokio::time::timeout(60 * SEC, svc.clone().oneshot(request())).await;
            match called {
                // A hint no clock can wait for ends the call with an error (a quota, a 503
                // not retried, a circuit opened by them...), never with a panic.
                Ok(Err(err)) => assert!(
                    !err.kind().is_retryable()
                        || err.kind() == ErrorKind::Server
                        || err.kind() == ErrorKind::RateLimited,
                    "{hint}: {err}"
                ),
                Ok(Ok(_)) => panic!("{hint}: a 429 cannot succeed"),
                // Still waiting for a backoff that may be long (no cap): fine.
                Err(_elapsed) => {}
            }
        }
    }
}
