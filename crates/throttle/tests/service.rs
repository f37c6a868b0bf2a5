//! Behaviour of the throttle service in paused time: waiting, ordering, cancellation, and what
//! it learns from the provider's answers.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use towline_core::event::{Event, Observer};
use towline_core::{
    ApiError, Error, ErrorKind, HintSource, KeyHash, RateLimitSnapshot, RateLimitWindow, RetryHint,
    ThrottleReason,
};
use towline_throttle::{Quota, ThrottleDelay, ThrottleLayer};

const MS: Duration = Duration::from_millis(1);

type Answer = Box<dyn Fn(usize) -> Result<Response<()>, Error> + Send + Sync>;

/// A provider stand-in: records when each call arrived (by its `x-i` header and key) and
/// answers with `answer(call number)`.
#[derive(Clone)]
struct Provider {
    start: Instant,
    log: Arc<Mutex<Vec<(Duration, String, usize)>>>,
    answer: Arc<Answer>,
}

impl Provider {
    fn ok() -> Self {
        Self::answering(|_| Ok(Response::new(())))
    }

    fn answering(
        answer: impl Fn(usize) -> Result<Response<()>, Error> + Send + Sync + 'static,
    ) -> Self {
        Provider {
            start: Instant::now(),
            log: Arc::default(),
            answer: Arc::new(Box::new(answer)),
        }
    }

    fn service(
        &self,
    ) -> impl Service<Request<()>, Response = Response<()>, Error = Error, Future: Send>
    + Clone
    + Send
    + 'static {
        let this = self.clone();
        service_fn(move |req: Request<()>| {
            // Recorded when the throttle calls the service, i.e. when it sends.
            let i = req
                .headers()
                .get("x-i")
                .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
            let key = req
                .headers()
                .get("x-k")
                .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
            let n = {
                let mut log = this.log.lock().unwrap();
                log.push((this.start.elapsed(), key, i));
                log.len() - 1
            };
            let answer = (this.answer)(n);
            async move { answer }
        })
    }

    fn arrivals(&self) -> Vec<(Duration, String, usize)> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

fn req(key: &str, i: usize) -> Request<()> {
    let mut b = Request::builder()
        .header("x-i", i.to_string())
        .header("x-k", key);
    if !key.is_empty() {
        b = b.header("authorization", format!("Bearer {key}"));
    }
    b.body(()).unwrap()
}

fn observed() -> (Observer, Arc<Mutex<Vec<Event>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Observer::new(move |e| sink.lock().unwrap().push(*e)), seen)
}

fn rate_limited(hint: Duration) -> Error {
    ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
        .with_retry_hint(RetryHint::new(hint, HintSource::RetryAfter))
        .into()
}

async fn call<S>(svc: &mut S, r: Request<()>) -> Result<Response<()>, Error>
where
    S: Service<Request<()>, Response = Response<()>, Error = Error>,
{
    svc.ready().await?.call(r).await
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_rate_waits_in_its_future_and_reports_the_wait() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder().rate(10.0).build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    let (observer, events) = observed();

    let first = call(&mut svc, req("sk-a", 0)).await.unwrap();
    assert!(first.extensions().get::<ThrottleDelay>().is_none());
    let mut second = req("sk-a", 1);
    second.extensions_mut().insert(observer);
    let second = call(&mut svc, second).await.unwrap();
    assert_eq!(
        second.extensions().get::<ThrottleDelay>(),
        Some(&ThrottleDelay(100 * MS))
    );
    assert_eq!(
        events.lock().unwrap().as_slice(),
        &[Event::ThrottleWaited { waited: 100 * MS }]
    );
    let times: Vec<_> = provider.arrivals().iter().map(|a| millis(a.0)).collect();
    assert_eq!(times, vec![0, 100]);
    assert_eq!(layer.total_wait(), 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn one_keys_wait_never_holds_up_another_key_or_poll_ready() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder().rate(1.0).build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    call(&mut svc, req("sk-a", 0)).await.unwrap();
    let waiting = tokio::spawn(svc.ready().await.unwrap().call(req("sk-a", 1)));
    tokio::task::yield_now().await;
    // poll_ready answers at once; the other key is sent at once.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    call(&mut svc, req("sk-b", 2)).await.unwrap();
    assert_eq!(millis(provider.arrivals()[1].0), 0);
    waiting.await.unwrap().unwrap();
    assert_eq!(
        provider.arrivals()[2],
        (Duration::from_secs(1), "sk-a".into(), 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_beyond_max_wait_fails_at_once_with_when_to_retry() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(1.0)
        .max_wait(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    call(&mut svc, req("sk-a", 0)).await.unwrap();
    let _waiting = svc.ready().await.unwrap().call(req("sk-a", 1)); // due at 1 s
    let (observer, events) = observed();
    let mut third = req("sk-a", 2);
    third.extensions_mut().insert(observer);
    let start = Instant::now();
    let err = call(&mut svc, third).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "refused without waiting");
    let Error::Throttled(t) = err else {
        panic!("{err:?}")
    };
    assert_eq!(t.reason, ThrottleReason::WaitTooLong);
    assert_eq!(t.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(
        events.lock().unwrap().as_slice(),
        &[Event::ThrottleRejected {
            reason: ThrottleReason::WaitTooLong,
            retry_after: Some(Duration::from_secs(2))
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn waiters_of_one_key_are_served_in_arrival_order() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(20.0)
        .burst(2)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    let mut tasks = Vec::new();
    for i in 0..12 {
        let fut = svc.ready().await.unwrap().call(req("sk-a", i));
        tasks.push(tokio::spawn(fut));
        // Newcomers keep arriving while the earlier ones wait.
        tokio::time::advance(7 * MS).await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let order: Vec<usize> = provider.arrivals().iter().map(|a| a.2).collect();
    assert_eq!(order, (0..12).collect::<Vec<_>>());
    // Never more than the burst plus the rate over any window.
    let times: Vec<f64> = provider
        .arrivals()
        .iter()
        .map(|a| a.0.as_secs_f64())
        .collect();
    for i in 0..times.len() {
        for j in i..times.len() {
            let sent = (j - i + 1) as f64;
            assert!(
                sent <= 2.0 + 20.0 * (times[j] - times[i]) + 1e-9,
                "{times:?}"
            );
        }
    }
    assert_eq!(layer.stats().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_frees_its_place_and_consumes_nothing() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder().rate(10.0).build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    call(&mut svc, req("sk-a", 0)).await.unwrap();
    let mut b = Box::pin(svc.ready().await.unwrap().call(req("sk-a", 1)));
    let c = tokio::spawn(svc.ready().await.unwrap().call(req("sk-a", 2)));
    // B takes its place at the head of the queue, then its caller gives up.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(Pin::new(&mut b).poll(&mut cx).is_pending());
    tokio::task::yield_now().await;
    assert_eq!(layer.stats().waiters, 2);
    drop(b);
    assert_eq!(layer.stats().waiters, 1);
    c.await.unwrap().unwrap();
    // C went in B's slot, 100 ms after A: B consumed nothing.
    assert_eq!(provider.arrivals()[1], (100 * MS, "sk-a".into(), 2));
    assert_eq!(layer.stats().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn reject_only_never_waits() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(1.0)
        .burst(2)
        .reject_only()
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    call(&mut svc, req("sk-a", 0)).await.unwrap();
    call(&mut svc, req("sk-a", 1)).await.unwrap();
    let err = call(&mut svc, req("sk-a", 2)).await.unwrap_err();
    assert!(
        matches!(err, Error::Throttled(t) if t.reason == ThrottleReason::RateExceeded && t.retry_after == Some(Duration::from_secs(1)))
    );
    assert_eq!(provider.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_buckets_and_keyless_calls_share_one() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(1.0)
        .reject_only()
        .build()
        .unwrap();
    let mut a = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    let mut b = a.clone();
    let mut c = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    call(&mut a, req("sk-a", 0)).await.unwrap();
    assert!(call(&mut b, req("sk-a", 1)).await.is_err());
    assert!(call(&mut c, req("sk-a", 2)).await.is_err());
    call(&mut a, req("", 3)).await.unwrap();
    assert!(
        call(&mut b, req("", 4)).await.is_err(),
        "calls without a key share one bucket"
    );
}

#[tokio::test(start_paused = true)]
async fn costs_and_per_key_quotas_apply() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(100.0) // tokens per second
        .burst(100)
        .key_quota(KeyHash::of(b"sk-big"), Quota::new(1000.0, 1000))
        .cost(|r: &Request<()>| {
            r.headers()
                .get("x-i")
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        })
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    call(&mut svc, req("sk-a", 100)).await.unwrap();
    call(&mut svc, req("sk-a", 50)).await.unwrap(); // 50 tokens back after 500 ms
    call(&mut svc, req("sk-big", 1000)).await.unwrap();
    call(&mut svc, req("sk-big", 500)).await.unwrap();
    let times: Vec<u128> = provider.arrivals().iter().map(|a| millis(a.0)).collect();
    assert_eq!(times, vec![0, 500, 500, 1000]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_pauses_new_and_retried_calls_of_that_key_only() {
    let provider = Provider::answering(|n| {
        if n == 0 {
            Err(rate_limited(Duration::from_secs(2)))
        } else {
            Ok(Response::new(()))
        }
    });
    let layer = ThrottleLayer::builder().build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    let (observer, events) = observed();
    let mut first = req("sk-a", 0);
    first.extensions_mut().insert(observer);
    let err = call(&mut svc, first).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(events.lock().unwrap().contains(&Event::KeyPaused {
        pause: Duration::from_secs(2),
        cause: ErrorKind::RateLimited
    }));

    // A retry at once (no backoff of its own) and a new call of the same key are both held.
    let retry = tokio::spawn(svc.ready().await.unwrap().call(req("sk-a", 1)));
    let fresh = tokio::spawn(svc.ready().await.unwrap().call(req("sk-a", 2)));
    call(&mut svc, req("sk-b", 3)).await.unwrap();
    retry.await.unwrap().unwrap();
    fresh.await.unwrap().unwrap();
    let arrivals = provider.arrivals();
    assert_eq!(
        arrivals[1],
        (Duration::ZERO, "sk-b".into(), 3),
        "other keys go on"
    );
    for a in &arrivals[2..] {
        assert_eq!(a.1, "sk-a");
        assert!(
            a.0 >= Duration::from_secs(2),
            "sent during the pause: {arrivals:?}"
        );
    }
    // The pause does not end in a stampede: the key's learned rate releases one at a time.
    assert!(arrivals[3].0 > arrivals[2].0, "{arrivals:?}");
}

#[tokio::test(start_paused = true)]
async fn a_quota_block_fails_calls_locally_without_a_round_trip() {
    let quota = ApiError::new(ErrorKind::QuotaExhausted, StatusCode::FORBIDDEN)
        .with_provider_type("exceeded_current_quota_error")
        .with_message("You exceeded your current quota")
        .with_retry_hint(RetryHint::new(
            Duration::from_secs(3600),
            HintSource::RetryAfter,
        ));
    let provider = Provider::answering(move |n| {
        if n == 0 {
            Err(quota.clone().into())
        } else {
            Ok(Response::new(()))
        }
    });
    let layer = ThrottleLayer::builder().build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    assert_eq!(
        call(&mut svc, req("sk-a", 0)).await.unwrap_err().kind(),
        ErrorKind::QuotaExhausted
    );
    tokio::time::advance(Duration::from_secs(600)).await;
    let (observer, events) = observed();
    let mut again = req("sk-a", 1);
    again.extensions_mut().insert(observer);
    let err = call(&mut svc, again).await.unwrap_err();
    let api = err.api().expect("the provider's own error");
    assert_eq!(api.provider_type(), Some("exceeded_current_quota_error"));
    assert_eq!(api.message(), Some("You exceeded your current quota"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3000)));
    assert!(matches!(
        events.lock().unwrap()[0],
        Event::ThrottleRejected {
            reason: ThrottleReason::PausedByProvider,
            ..
        }
    ));
    assert_eq!(provider.count(), 1, "no round trip");
    call(&mut svc, req("sk-b", 2)).await.unwrap();
    tokio::time::advance(Duration::from_secs(3000)).await;
    call(&mut svc, req("sk-a", 3)).await.unwrap();
    assert_eq!(provider.count(), 3);
}

#[tokio::test(start_paused = true)]
async fn remaining_zero_on_a_success_holds_the_key_until_the_reset() {
    let provider = Provider::answering(|n| {
        let mut resp = Response::new(());
        if n == 0 {
            resp.extensions_mut().insert(RateLimitSnapshot {
                requests: RateLimitWindow {
                    limit: Some(10),
                    remaining: Some(0),
                    reset: Some(Duration::from_millis(1500)),
                },
                tokens: RateLimitWindow::default(),
            });
        }
        Ok(resp)
    });
    let layer = ThrottleLayer::builder().build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider.service());
    let (observer, events) = observed();
    let mut first = req("sk-a", 0);
    first.extensions_mut().insert(observer);
    call(&mut svc, first).await.unwrap();
    assert!(events.lock().unwrap().contains(&Event::KeyPaused {
        pause: Duration::from_millis(1500),
        cause: ErrorKind::Unknown
    }));
    let resp = call(&mut svc, req("sk-a", 1)).await.unwrap();
    assert_eq!(
        resp.extensions().get::<ThrottleDelay>(),
        Some(&ThrottleDelay(Duration::from_millis(1500)))
    );
    assert_eq!(millis(provider.arrivals()[1].0), 1500);
}

#[tokio::test(start_paused = true)]
async fn server_errors_count_as_answers_that_passed_a_learning_keys_limit() {
    // Forty successes at 20 a second, one refusal, then nothing but 500s: the provider's
    // limiter let those through, so the learned rate grows back as it would on successes.
    let provider = Provider::answering(|n| match n {
        0..40 => Ok(Response::new(())),
        40 => Err(rate_limited(Duration::ZERO)),
        _ => Err(ApiError::new(ErrorKind::Server, StatusCode::INTERNAL_SERVER_ERROR).into()),
    });
    let layer = ThrottleLayer::builder().wait_forever().build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    let key = KeyHash::of(b"sk-a");
    for i in 0..41 {
        let _ = call(&mut svc, req("sk-a", i)).await;
        tokio::time::sleep(50 * MS).await;
    }
    let cut = layer
        .store()
        .learned_rate(Some(&key))
        .expect("a rate was learned");
    assert!(cut < 20.0, "{cut}");
    for i in 41..81 {
        let err = call(&mut svc, req("sk-a", i)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Server);
        tokio::time::sleep(50 * MS).await;
    }
    let grown = layer.store().learned_rate(Some(&key)).unwrap();
    assert!(grown > 1.5 * cut, "{cut} -> {grown}");
}

#[tokio::test(start_paused = true)]
async fn errors_and_debug_output_never_show_the_key() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(1.0)
        .reject_only()
        .key_quota(KeyHash::of(b"sk-SECRET-123"), Quota::new(1.0, 1))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    call(&mut svc, req("sk-SECRET-123", 0)).await.unwrap();
    let err = call(&mut svc, req("sk-SECRET-123", 1)).await.unwrap_err();
    let fut = svc.ready().await.unwrap().call(req("sk-SECRET-123", 2));
    for text in [
        format!("{err}"),
        format!("{err:?}"),
        format!("{layer:?}"),
        format!("{fut:?}"),
    ] {
        assert!(!text.contains("SECRET"), "{text}");
    }
}

#[test]
fn bad_settings_are_refused_naming_the_setting() {
    use towline_throttle::Adaptive;
    let cases = [
        (ThrottleLayer::builder().rate(0.0).build().err(), "rate"),
        (ThrottleLayer::builder().rate(-1.0).build().err(), "rate"),
        (
            ThrottleLayer::builder().rate(f64::NAN).build().err(),
            "rate",
        ),
        (
            ThrottleLayer::builder().rate(1.0).burst(0).build().err(),
            "burst",
        ),
        (ThrottleLayer::builder().burst(3).build().err(), "burst"),
        (
            ThrottleLayer::builder()
                .key_quota(KeyHash::of(b"k"), Quota::new(0.0, 1))
                .build()
                .err(),
            "key_quota",
        ),
        (
            ThrottleLayer::builder()
                .max_wait(Duration::MAX)
                .build()
                .err(),
            "max_wait",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().floor(0.0))
                .build()
                .err(),
            "adaptive.floor",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().floor(2.0).ceiling(1.0))
                .build()
                .err(),
            "adaptive.ceiling",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().decrease(1.0))
                .build()
                .err(),
            "adaptive.decrease",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().growth(0.0))
                .build()
                .err(),
            "adaptive.growth",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().max_background(0.5))
                .build()
                .err(),
            "adaptive.max_background",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().max_background(f64::NAN))
                .build()
                .err(),
            "adaptive.max_background",
        ),
        (
            ThrottleLayer::builder()
                .adaptive(Adaptive::default().forget_after(Duration::ZERO))
                .build()
                .err(),
            "adaptive.forget_after",
        ),
    ];
    for (err, setting) in cases {
        let err = err.unwrap_or_else(|| panic!("{setting} accepted"));
        assert_eq!(err.setting(), setting);
        assert!(err.to_string().contains(setting));
    }
}

#[tokio::test(start_paused = true)]
async fn a_future_dropped_after_any_number_of_polls_leaves_nothing_behind() {
    let provider = Provider::ok();
    let layer = ThrottleLayer::builder()
        .rate(10.0)
        .burst(2)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(provider.service());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for k in 0..6 {
        // Three calls of one key at once: two go, the third waits; each is dropped after k
        // polls, 40 ms apart.
        let mut futs: Vec<_> = (0..3)
            .map(|i| Some(Box::pin(svc.call(req("sk-a", 10 * k + i)))))
            .collect();
        for _ in 0..k {
            for slot in futs.iter_mut() {
                if let Some(fut) = slot
                    && fut.as_mut().poll(&mut cx).is_ready()
                {
                    *slot = None;
                }
            }
            tokio::time::advance(40 * MS).await;
        }
        drop(futs);
        assert_eq!(layer.stats().waiters, 0, "after {k} polls");
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // Only calls that were sent took tokens: after a second, a full burst is there again.
    for i in 0..2 {
        let resp = call(&mut svc, req("sk-a", 100 + i)).await.unwrap();
        assert!(resp.extensions().get::<ThrottleDelay>().is_none());
    }
    let third = call(&mut svc, req("sk-a", 102)).await.unwrap();
    assert_eq!(
        third.extensions().get::<ThrottleDelay>(),
        Some(&ThrottleDelay(100 * MS))
    );
    assert_eq!(layer.stats().waiters, 0);
}
