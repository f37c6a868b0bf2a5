//! Behaviour of the retry layer over a scripted provider, on paused tokio time.

mod support;
mod timeout;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Version};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::event::{Event, StopReason};
use towline_core::{Error, ErrorKind, SessionQueueReason, ThrottleReason};
use towline_retry::{
    Attempt, Attempts, Decision, Jitter, RetryBudget, RetryLayer, RetryLayerBuilder,
};

use support::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// Seeded, no jitter: delays are exactly 500 ms, 1 s, 2 s, 4 s, ...
fn builder() -> RetryLayerBuilder {
    RetryLayer::builder().seed(7).jitter(Jitter::None)
}

fn retry_events(events: &[Event]) -> Vec<Event> {
    events
        .iter()
        .copied()
        .filter(|e| matches!(e, Event::RetryScheduled { .. } | Event::RetryStopped { .. }))
        .collect()
}

fn stopped(events: &[Event]) -> Option<(u32, StopReason)> {
    events.iter().rev().find_map(|e| match e {
        Event::RetryStopped { attempts, reason } => Some((*attempts, *reason)),
        _ => None,
    })
}

fn assert_close(actual: Duration, expected: Duration) {
    assert!(
        actual >= expected && actual <= expected + 2 * MS,
        "expected {expected:?}, got {actual:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_provider_class_is_retried_or_not_as_its_class_says() {
    let classes = [
        (api(ErrorKind::Authentication, 401), false),
        (api(ErrorKind::PermissionDenied, 403), false),
        (api(ErrorKind::QuotaExhausted, 429), false),
        (api(ErrorKind::RateLimited, 429), true),
        (api(ErrorKind::Overloaded, 529), true),
        (api(ErrorKind::InvalidRequest, 400), false),
        (api(ErrorKind::ContextLengthExceeded, 400), false),
        (api(ErrorKind::ContentFiltered, 400), false),
        (api(ErrorKind::NotFound, 404), false),
        (api(ErrorKind::Conflict, 409), true),
        (api(ErrorKind::PayloadTooLarge, 413), false),
        (api(ErrorKind::Server, 500), true),
        (api(ErrorKind::Server, 502), true),
        (api(ErrorKind::Timeout, 504), true),
        (api(ErrorKind::Unknown, 418), false),
        (
            Error::transport(std::io::Error::other("connection reset")),
            true,
        ),
        (Error::timeout(30 * SEC), true),
        (
            Error::stream_interrupted(api(ErrorKind::Overloaded, 200)),
            false,
        ),
    ];
    for (error, retryable) in classes {
        let kind = error.kind();
        let provider = Provider::new([Step::Fail(error)]);
        let (req, events) = observed_post("{}");
        let result = ServiceBuilder::new()
            .layer(builder().build().unwrap())
            .service(provider.service())
            .oneshot(req)
            .await;
        let events = events.lock().unwrap().clone();
        if retryable {
            let response = result.unwrap_or_else(|e| panic!("{kind} not retried: {e}"));
            assert_eq!(Attempts::of(&response), 2, "{kind}");
            assert_eq!(provider.attempts(), 2, "{kind}");
        } else {
            let err = result.expect_err("not retryable");
            assert_eq!(err.kind(), kind, "the error is returned as it is");
            assert_eq!(provider.attempts(), 1, "{kind} was retried");
            assert_eq!(
                stopped(&events),
                Some((1, StopReason::NotRetryable)),
                "{kind}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn local_decisions_are_never_retried_even_when_a_policy_asks() {
    let local = [
        Error::throttled(ThrottleReason::WaitTooLong, Some(SEC)),
        Error::circuit_open(SEC),
        Error::session_queue_full(SessionQueueReason::Full { limit: 4 }),
        Error::deadline_exceeded(1, None),
        Error::budget_exhausted(2, api(ErrorKind::Server, 500)),
    ];
    for error in local {
        let kind = error.kind();
        let provider = Provider::new([Step::Fail(error)]);
        let layer = builder()
            .policy(|_: &Error, _: &Attempt<'_>| Decision::Retry)
            .build()
            .unwrap();
        let err = ServiceBuilder::new()
            .layer(layer)
            .service(provider.service())
            .oneshot(post("{}"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind);
        assert_eq!(provider.attempts(), 1, "{kind} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_class_both_ways() {
    use http::StatusCode;
    use towline_core::ApiError;

    let unavailable =
        ApiError::new(ErrorKind::Server, StatusCode::SERVICE_UNAVAILABLE).with_should_retry(false);
    let provider = Provider::new([Step::Fail(unavailable.into())]);
    let err = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(provider.attempts(), 1, "x-should-retry: false");

    let conflict =
        ApiError::new(ErrorKind::InvalidRequest, StatusCode::BAD_REQUEST).with_should_retry(true);
    let provider = Provider::new([Step::Fail(conflict.into())]);
    let response = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 2, "x-should-retry: true");
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_the_longer_of_hint_and_backoff() {
    // Backoff without jitter: 500 ms, 1 s, 2 s. Hints: 3 s (longer), 100 ms (shorter), none.
    let provider = Provider::new([
        Step::Fail(api_with_hint(ErrorKind::RateLimited, 429, 3 * SEC)),
        Step::Fail(api_with_hint(ErrorKind::RateLimited, 429, 100 * MS)),
        Step::Fail(api(ErrorKind::Server, 500)),
    ]);
    let (req, events) = observed_post("{}");
    let response = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 4);
    let gaps = gaps(&provider.seen());
    assert_close(gaps[0], 3 * SEC);
    assert_close(gaps[1], SEC);
    assert_close(gaps[2], 2 * SEC);
    assert_eq!(
        retry_events(&events.lock().unwrap()),
        [
            Event::RetryScheduled {
                attempt: 1,
                delay: 3 * SEC,
                reason: ErrorKind::RateLimited
            },
            Event::RetryScheduled {
                attempt: 2,
                delay: SEC,
                reason: ErrorKind::RateLimited
            },
            Event::RetryScheduled {
                attempt: 3,
                delay: 2 * SEC,
                reason: ErrorKind::Server
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn never_before_the_hint_whatever_the_jitter() {
    for seed in 0..40u64 {
        let hint = Duration::from_millis(50 + seed * 97 % 3000);
        let jitter = [Jitter::Full, Jitter::Equal, Jitter::Decorrelated][seed as usize % 3];
        let provider = Provider::new([
            Step::Fail(api_with_hint(ErrorKind::RateLimited, 429, hint)),
            Step::Fail(api_with_hint(ErrorKind::Overloaded, 529, hint)),
        ]);
        let layer = RetryLayer::builder()
            .seed(seed)
            .jitter(jitter)
            .build()
            .unwrap();
        ServiceBuilder::new()
            .layer(layer)
            .service(provider.service())
            .oneshot(post("{}"))
            .await
            .unwrap();
        for gap in gaps(&provider.seen()) {
            assert!(gap >= hint, "seed {seed}: waited {gap:?} < hint {hint:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hint_longer_than_the_cap_fails_at_once() {
    let provider = Provider::new([Step::Fail(api_with_hint(
        ErrorKind::RateLimited,
        429,
        121 * SEC,
    ))]);
    let (req, events) = observed_post("{}");
    let started = Instant::now();
    let err = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "no sleep");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(
        err.retry_after(),
        Some(121 * SEC),
        "the caller still sees the hint"
    );
    assert_eq!(provider.attempts(), 1);
    assert_eq!(
        stopped(&events.lock().unwrap()),
        Some((1, StopReason::HintTooLong))
    );

    // Exactly the cap is still waited for; a lower cap is honoured.
    let provider = Provider::new([Step::Fail(api_with_hint(
        ErrorKind::RateLimited,
        429,
        120 * SEC,
    ))]);
    let started = Instant::now();
    ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_close(started.elapsed(), 120 * SEC);

    let provider = Provider::new([Step::Fail(api_with_hint(
        ErrorKind::RateLimited,
        429,
        5 * SEC,
    ))]);
    let err = ServiceBuilder::new()
        .layer(builder().max_retry_after(4 * SEC).build().unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_is_not_started() {
    let provider = Provider::new([Step::Fail(api_with_hint(
        ErrorKind::RateLimited,
        429,
        10 * SEC,
    ))]);
    let (req, events) = observed_post("{}");
    let started = Instant::now();
    let err = ServiceBuilder::new()
        .layer(builder().deadline(5 * SEC).build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    let Error::DeadlineExceeded(gave_up) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(gave_up.attempts(), 1);
    assert_eq!(
        gave_up.last().map(Error::kind),
        Some(ErrorKind::RateLimited)
    );
    assert_eq!(err.retry_after(), Some(10 * SEC));
    assert_eq!(
        stopped(&events.lock().unwrap()),
        Some((1, StopReason::Deadline))
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_an_attempt_in_flight() {
    // Attempt 1 fails at once, the retry (after 500 ms) hangs: the call ends at 2 s sharp.
    let provider = Provider::new([Step::Fail(api(ErrorKind::Server, 500)), Step::Hang]);
    let (req, events) = observed_post("{}");
    let started = Instant::now();
    let err = ServiceBuilder::new()
        .layer(builder().deadline(2 * SEC).build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_close(started.elapsed(), 2 * SEC);
    let Error::DeadlineExceeded(gave_up) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(gave_up.attempts(), 2);
    assert_eq!(gave_up.last().map(Error::kind), Some(ErrorKind::Server));
    assert_eq!(
        stopped(&events.lock().unwrap()),
        Some((2, StopReason::Deadline))
    );

    // A first attempt that never answers: nothing finished, so no last error.
    let provider = Provider::new([Step::Hang]);
    let err = ServiceBuilder::new()
        .layer(builder().deadline(SEC).build().unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap_err();
    let Error::DeadlineExceeded(gave_up) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((gave_up.attempts(), gave_up.last().is_none()), (1, true));
}

#[tokio::test(start_paused = true)]
async fn max_retries_bounds_the_attempts_of_a_call() {
    for max_retries in [0, 1, 3, 5] {
        let provider = Provider::always(10, || api(ErrorKind::Overloaded, 529));
        let (req, events) = observed_post("{}");
        let err = ServiceBuilder::new()
            .layer(builder().max_retries(max_retries).build().unwrap())
            .service(provider.service())
            .oneshot(req)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Overloaded,
            "the last error, unwrapped"
        );
        assert_eq!(provider.attempts(), max_retries as usize + 1);
        assert_eq!(
            stopped(&events.lock().unwrap()),
            Some((max_retries + 1, StopReason::MaxAttempts))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_returns_the_last_error_marked_and_clones_share_it() {
    // 50 % and no floor: the first call's deposit is half a retry, the second makes a whole.
    let layer = builder()
        .max_retries(1)
        .budget_ratio(0.5)
        .budget_floor(0)
        .build()
        .unwrap();
    let provider = Provider::always(10, || api(ErrorKind::Server, 500));
    let mut first = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    let second = first.clone();

    let (req, events) = observed_post("{}");
    let err = first.ready().await.unwrap().call(req).await.unwrap_err();
    let Error::BudgetExhausted(gave_up) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(gave_up.attempts(), 1);
    assert_eq!(gave_up.last().map(Error::kind), Some(ErrorKind::Server));
    assert_eq!(err.user_message(), ErrorKind::Server.user_message());
    assert_eq!(
        stopped(&events.lock().unwrap()),
        Some((1, StopReason::BudgetExhausted))
    );
    assert_eq!(provider.attempts(), 1);

    // The clone's deposit completes the retry the first one started to save.
    let err = second.oneshot(post("{}")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Server,
        "retried once, then max retries"
    );
    assert_eq!(provider.attempts(), 3);
    assert_eq!(layer.budget().unwrap().available(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_exact_for_every_ratio() {
    // 100 calls against a total outage, one retry each at most, no floor: exactly
    // ⌊ratio × 100⌋ retries (tower's TpsBudget would give 100 for 0.6).
    for (ratio, retries) in [(0.01, 1), (0.2, 20), (0.6, 60), (1.0, 100)] {
        let layer = builder()
            .max_retries(1)
            .budget_ratio(ratio)
            .budget_floor(0)
            .backoff_base(MS)
            .backoff_max(MS)
            .build()
            .unwrap();
        let provider = Provider::always(1000, || api(ErrorKind::Server, 500));
        let service = ServiceBuilder::new()
            .layer(layer)
            .service(provider.service());
        for _ in 0..100 {
            let _ = service.clone().oneshot(post("{}")).await;
        }
        assert_eq!(provider.attempts(), 100 + retries, "ratio {ratio}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_total_outage_is_bounded_by_the_budget() {
    // 1,000 concurrent calls, 3 retries each allowed, default budget (20 % + 10/s over 10 s).
    let provider = Provider::always(100_000, || api(ErrorKind::Server, 503));
    let service = ServiceBuilder::new()
        .layer(RetryLayer::builder().seed(1).build().unwrap())
        .service(provider.service());
    let started = Instant::now();
    let calls = (0..1000).map(|_| service.clone().oneshot(post("{}")));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_err));
    let seconds = started.elapsed().as_secs();
    let floor = 10 * 10 * (seconds + 1).div_ceil(10) as usize;
    let attempts = provider.attempts();
    assert!(
        attempts <= 1200 + floor,
        "{attempts} attempts in {seconds} s"
    );
    assert!(attempts >= 1200, "the budget was used: {attempts}");
    let exhausted = results
        .iter()
        .filter(|r| matches!(r, Err(Error::BudgetExhausted(_))))
        .count();
    assert!(exhausted > 0);
}

type Frames = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// A streaming body of `chunks` (no size hint: it must be read to know its length).
fn streaming(chunks: &[&'static [u8]]) -> StreamBody<Frames> {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c))))
        .collect();
    StreamBody::new(stream::iter(frames))
}

#[tokio::test(start_paused = true)]
async fn every_attempt_replays_the_same_request() {
    let mut req = Request::post("http://provider.test/v1/chat/completions?x=1")
        .version(Version::HTTP_2)
        .header("authorization", "Bearer sk-test")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .body(streaming(&[b"{\"model\":", b"\"kimi\"", b"}"]))
        .unwrap();
    req.extensions_mut().insert(Marker("call-1"));
    let provider = Provider::new([
        fail(ErrorKind::Server, 500),
        fail(ErrorKind::Overloaded, 529),
    ]);
    let response = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 3);
    let seen = provider.seen();
    assert_eq!(seen.len(), 3);
    for attempt in &seen {
        assert_eq!(attempt.method, http::Method::POST);
        assert_eq!(attempt.uri, "http://provider.test/v1/chat/completions?x=1");
        assert_eq!(attempt.version, Version::HTTP_2);
        assert_eq!(attempt.headers, seen[0].headers);
        assert_eq!(
            attempt.headers.get_all("x-multi").iter().count(),
            2,
            "repeated headers kept"
        );
        assert_eq!(attempt.marker, Some(Marker("call-1")));
        assert_eq!(attempt.body.as_ref(), b"{\"model\":\"kimi\"}");
        assert!(!attempt.streaming);
    }
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_over_the_replay_limit_is_sent_once() {
    let chunks: [&'static [u8]; 4] = [&[b'a'; 16], &[b'b'; 16], &[b'c'; 16], &[b'd'; 16]];
    let req = Request::post("http://provider.test/v1/chat/completions")
        .body(streaming(&chunks))
        .unwrap();
    let (observer, events) = recorder();
    let mut req = req;
    req.extensions_mut().insert(observer);
    let provider = Provider::new([fail(ErrorKind::Server, 500)]);
    let err = ServiceBuilder::new()
        .layer(builder().replay_limit(20).build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    let seen = provider.seen();
    assert_eq!(seen.len(), 1, "sent once");
    assert!(seen[0].streaming);
    assert_eq!(seen[0].body, chunks.concat(), "nothing lost");
    assert_eq!(
        stopped(&events.lock().unwrap()),
        Some((1, StopReason::NotReplayable))
    );

    // A body over the default 1 MiB limit, known from its size hint, is not even read ahead.
    let big = Full::new(Bytes::from(vec![b'x'; 2 * 1024 * 1024]));
    let provider = Provider::new([fail(ErrorKind::Server, 500)]);
    let err = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(Request::post("http://provider.test/").body(big).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(provider.attempts(), 1);
    assert_eq!(provider.seen()[0].body.len(), 2 * 1024 * 1024);
}

#[tokio::test(start_paused = true)]
async fn the_idempotency_key_is_one_per_call_and_the_same_on_every_attempt() {
    let provider = Provider::new([fail(ErrorKind::Server, 500), fail(ErrorKind::Server, 500)]);
    let service = ServiceBuilder::new()
        .layer(builder().idempotency_key(true).build().unwrap())
        .service(provider.service());
    service.clone().oneshot(post("{}")).await.unwrap();
    service.clone().oneshot(post("{}")).await.unwrap();
    let mut caller_key = post("{}");
    caller_key
        .headers_mut()
        .insert("idempotency-key", "caller-chosen".parse().unwrap());
    provider.push(fail(ErrorKind::Server, 500));
    service.oneshot(caller_key).await.unwrap();

    let keys: Vec<_> = provider
        .seen()
        .iter()
        .map(|s| s.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 6);
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[1], keys[2], "same key on every attempt");
    assert_ne!(keys[2], keys[3], "a new key per call");
    assert_eq!(keys[3].to_str().unwrap().len(), 36, "a UUID");
    assert_eq!(keys[4], "caller-chosen", "the caller's key is kept");
    assert_eq!(keys[5], "caller-chosen");

    // Off by default.
    let provider = Provider::new([]);
    ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert!(!provider.seen()[0].headers.contains_key("idempotency-key"));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_while_it_waits_refunds_its_retry() {
    let budget = RetryBudget::new(1.0, 0, 10 * SEC).unwrap();
    let provider = Provider::new([Step::Fail(api_with_hint(
        ErrorKind::RateLimited,
        429,
        10 * SEC,
    ))]);
    let mut service = ServiceBuilder::new()
        .layer(builder().budget(budget.clone()).build().unwrap())
        .service(provider.service());
    service.ready().await.unwrap();
    let mut call = tokio_test::task::spawn(service.call(post("{}")));
    assert!(call.poll().is_pending(), "waiting for the hint");
    assert_eq!(provider.attempts(), 1);
    assert_eq!(
        budget.available(),
        0,
        "the call's deposit is reserved for its retry"
    );
    drop(call);
    assert_eq!(budget.available(), 1, "refunded");
    tokio::time::sleep(20 * SEC).await;
    assert_eq!(provider.attempts(), 1, "nothing left running");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_mid_attempt_keeps_the_budget_and_the_service_sound() {
    let budget = RetryBudget::new(1.0, 0, 10 * SEC).unwrap();
    let provider = Provider::new([fail(ErrorKind::Server, 500), Step::Hang]);
    let mut service = ServiceBuilder::new()
        .layer(builder().budget(budget.clone()).build().unwrap())
        .service(provider.service());
    service.ready().await.unwrap();
    let mut call = tokio_test::task::spawn(service.call(post("{}")));
    assert!(call.poll().is_pending());
    tokio::time::advance(SEC).await;
    assert!(call.poll().is_pending(), "the retry hangs");
    assert_eq!(provider.attempts(), 2);
    drop(call);
    assert_eq!(budget.available(), 0, "the retry was sent: it stays spent");
    // The service is unaffected: the next call (deposit 1) goes through.
    let response = service
        .ready()
        .await
        .unwrap()
        .call(post("{}"))
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 1);
    assert_eq!(budget.available(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_policy_can_override_the_class_and_slow_retries_down() {
    let policy = |err: &Error, attempt: &Attempt<'_>| {
        assert_eq!(attempt.request().body().as_ref(), b"{\"n\":1}");
        match err.kind() {
            ErrorKind::Conflict => Decision::Stop,
            ErrorKind::InvalidRequest if attempt.number() == 1 => Decision::Retry,
            ErrorKind::Server => Decision::RetryAfter(5 * SEC),
            _ => Decision::Auto,
        }
    };
    let provider = Provider::new([
        fail(ErrorKind::InvalidRequest, 400),
        fail(ErrorKind::Server, 500),
        fail(ErrorKind::Conflict, 409),
    ]);
    let err = ServiceBuilder::new()
        .layer(builder().policy(policy).build().unwrap())
        .service(provider.service())
        .oneshot(post("{\"n\":1}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "stopped by the policy");
    let gaps = gaps(&provider.seen());
    assert_eq!(gaps.len(), 2);
    assert_close(gaps[0], 500 * MS);
    assert_close(gaps[1], 5 * SEC);
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_waits() {
    async fn waits(seed: u64) -> Vec<Duration> {
        let provider = Provider::always(3, || api(ErrorKind::Server, 500));
        ServiceBuilder::new()
            .layer(RetryLayer::builder().seed(seed).build().unwrap())
            .service(provider.service())
            .oneshot(post("{}"))
            .await
            .unwrap();
        gaps(&provider.seen())
    }
    assert_eq!(waits(11).await, waits(11).await);
    assert_ne!(waits(11).await, waits(12).await);
}

#[tokio::test(start_paused = true)]
async fn a_first_success_costs_no_extension_and_no_event() {
    let provider = Provider::new([]);
    let (req, events) = observed_post("{}");
    let response = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap();
    assert!(response.extensions().get::<Attempts>().is_none());
    assert_eq!(Attempts::of(&response), 1);
    assert!(events.lock().unwrap().is_empty());
}

#[test]
fn every_bad_setting_is_rejected_by_name() {
    let cases: [(RetryLayerBuilder, &str); 8] = [
        (
            RetryLayer::builder().backoff_base(Duration::ZERO),
            "backoff_base",
        ),
        (
            RetryLayer::builder().backoff_base(SEC).backoff_max(MS),
            "backoff_max",
        ),
        (
            RetryLayer::builder().max_retry_after(Duration::ZERO),
            "max_retry_after",
        ),
        (RetryLayer::builder().deadline(Duration::ZERO), "deadline"),
        (RetryLayer::builder().budget_ratio(1.01), "budget_ratio"),
        (RetryLayer::builder().budget_ratio(-0.2), "budget_ratio"),
        (
            RetryLayer::builder().budget_floor(2_000_000),
            "budget_floor",
        ),
        (
            RetryLayer::builder().budget_ttl(Duration::ZERO),
            "budget_ttl",
        ),
    ];
    for (builder, setting) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert!(err.to_string().contains(setting));
    }
    assert!(
        RetryLayer::builder()
            .no_budget()
            .build()
            .unwrap()
            .budget()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_after_any_number_of_polls_the_budget_pays_only_for_retries_sent() {
    // Two retries (hint 1 s, then backoff 1 s) before a success. Whatever poll the call is
    // dropped after, the budget is charged exactly for the retries that reached the provider.
    for k in 0..12 {
        let budget = RetryBudget::new(1.0, 1, 10 * SEC).unwrap();
        let provider = Provider::new([
            Step::Fail(api_with_hint(ErrorKind::RateLimited, 429, SEC)),
            fail(ErrorKind::Server, 500),
        ]);
        let mut service = ServiceBuilder::new()
            .layer(builder().budget(budget.clone()).build().unwrap())
            .service(provider.service());
        service.ready().await.unwrap();
        let full = budget.available() + 1; // with this call's deposit
        let mut call = tokio_test::task::spawn(service.call(post("{}")));
        let mut finished = false;
        for _ in 0..k {
            if call.poll().is_ready() {
                finished = true;
                break;
            }
            tokio::time::advance(300 * MS).await;
        }
        drop(call);
        let retries_sent = provider.attempts().saturating_sub(1) as u64;
        assert_eq!(
            budget.available(),
            full - retries_sent,
            "dropped after {k} polls (finished: {finished})"
        );
        tokio::time::advance(10 * SEC).await;
        assert_eq!(
            provider.attempts() as u64,
            retries_sent + u64::from(k > 0),
            "k={k}"
        );
    }
}

#[test]
fn the_response_future_is_send_when_its_parts_are() {
    fn assert_send<T: Send>(_: &T) {}
    let provider = tower::service_fn(|_: Request<towline_core::ReplayBody<String>>| async {
        Ok::<_, Error>(http::Response::new(String::new()))
    });
    let mut service = ServiceBuilder::new()
        .layer(RetryLayer::default())
        .service(provider);
    let future = Service::call(&mut service, post("{}"));
    assert_send(&future);
    assert!(
        format!("{future:?}").contains("state: \"attempt\""),
        "{future:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn what_a_policy_prints_holds_no_credential() {
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = printed.clone();
    let layer = builder()
        .policy(move |_: &Error, attempt: &Attempt<'_>| {
            *sink.lock().unwrap() = format!("{attempt:?}");
            Decision::Auto
        })
        .build()
        .unwrap();
    let provider = Provider::new([fail(ErrorKind::Server, 500)]);
    let mut req = post("{}");
    req.headers_mut()
        .insert("authorization", "Bearer sk-secret-123".parse().unwrap());
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap();
    let printed = printed.lock().unwrap().clone();
    assert!(printed.contains("number: 1"), "{printed}");
    assert!(!printed.contains("sk-secret"), "{printed}");
    assert!(!format!("{layer:?}").contains("sk-secret"));
}

type Trickle =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;

/// A body whose chunks arrive one every `every`, as from a slow upload.
fn trickling(chunks: &'static [&'static [u8]], every: Duration) -> StreamBody<Trickle> {
    let stream = stream::unfold(0, move |i| async move {
        let chunk = chunks.get(i)?;
        tokio::time::sleep(every).await;
        Some((Ok(Frame::data(Bytes::from_static(chunk))), i + 1))
    });
    StreamBody::new(Box::pin(stream))
}

#[tokio::test(start_paused = true)]
async fn a_body_still_streaming_at_call_time_is_read_then_replayed() {
    let req = Request::post("http://provider.test/v1/chat/completions")
        .body(trickling(&[b"{\"a\":", b"1}"], 100 * MS))
        .unwrap();
    let provider = Provider::new([fail(ErrorKind::Server, 500)]);
    let started = Instant::now();
    let response = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 2);
    let seen = provider.seen();
    assert_eq!(
        seen[0].at - started,
        200 * MS,
        "sent once the body was read"
    );
    assert!(
        seen.iter()
            .all(|s| s.body.as_ref() == b"{\"a\":1}" && !s.streaming)
    );

    // The deadline also covers reading the body.
    let req = Request::post("http://provider.test/")
        .body(trickling(&[b"x", b"y", b"z"], SEC))
        .unwrap();
    let provider = Provider::new([]);
    let err = ServiceBuilder::new()
        .layer(builder().deadline(1500 * MS).build().unwrap())
        .service(provider.service())
        .oneshot(req)
        .await
        .unwrap_err();
    let Error::DeadlineExceeded(gave_up) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(gave_up.attempts(), 0);
    assert_eq!(provider.attempts(), 0);
}

#[tokio::test(start_paused = true)]
async fn in_memory_bodies_replay_without_the_caller_cloning_anything() {
    async fn twice<B>(body: B, expected: &'static [u8])
    where
        B: http_body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<towline_core::BoxError>,
    {
        let provider = Provider::new([fail(ErrorKind::Server, 500)]);
        let response = ServiceBuilder::new()
            .layer(builder().build().unwrap())
            .service(provider.service())
            .oneshot(Request::post("http://provider.test/").body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(Attempts::of(&response), 2);
        let seen = provider.seen();
        assert!(
            seen.iter()
                .all(|s| s.body.as_ref() == expected && !s.streaming)
        );
    }
    twice(Full::new(Bytes::from_static(b"{}")), b"{}").await;
    twice(String::from("{\"s\":1}"), b"{\"s\":1}").await;
    twice(http_body_util::Empty::<Bytes>::new(), b"").await;
    twice(Full::new(Bytes::from(vec![b'v'; 10])), b"vvvvvvvvvv").await;
}

/// A service that is not ready while its gate is closed (clones share the gate).
#[derive(Clone)]
struct Gate<S> {
    inner: S,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S: Service<R>, R> Service<R> for Gate<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        if self.open.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.poll_ready(cx)
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, req: R) -> S::Future {
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_waiting_for_a_ready_service_is_refunded_if_it_never_goes() {
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let budget = RetryBudget::new(1.0, 0, 10 * SEC).unwrap();
    let provider = Provider::new([fail(ErrorKind::Server, 500), fail(ErrorKind::Server, 500)]);
    let gate = Gate {
        inner: provider.service(),
        open: open.clone(),
    };
    let mut service = ServiceBuilder::new()
        .layer(
            builder()
                .budget(budget.clone())
                .deadline(5 * SEC)
                .build()
                .unwrap(),
        )
        .service(gate);

    // Dropped while the service below is not ready: the retry was never sent.
    service.ready().await.unwrap();
    let mut call = tokio_test::task::spawn(service.call(post("{}")));
    open.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(call.poll().is_pending());
    tokio::time::advance(SEC).await;
    assert!(
        call.poll().is_pending(),
        "the wait is over, the service is not ready"
    );
    assert_eq!(budget.available(), 0);
    drop(call);
    assert_eq!(budget.available(), 1, "refunded");
    assert_eq!(provider.attempts(), 1);

    // The deadline passes while the service below is not ready: refunded too.
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    service.ready().await.unwrap();
    let call = service.call(post("{}"));
    open.store(false, std::sync::atomic::Ordering::SeqCst);
    let err = call.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    assert_eq!(budget.available(), 2, "two deposits, no retry sent");
    assert_eq!(provider.attempts(), 2);
}
