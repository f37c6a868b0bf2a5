//! The throttle over the Normalize layer: it learns from what Normalize reads out of real
//! provider answers (the snapshot extension on successes, the typed error on failures).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use towline_core::event::{Event, Observer};
use towline_core::{Error, ErrorKind, KeyHash};
use towline_normalize::NormalizeLayer;
use towline_throttle::ThrottleLayer;

type Log = Arc<Mutex<Vec<Duration>>>;

/// Answers the `n`th call with `answer(n)` and records when each call was sent.
fn provider(
    answer: impl Fn(usize) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
) -> (
    impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Error, Future: Send> + Clone,
    Log,
) {
    let start = Instant::now();
    let log: Log = Arc::default();
    let sent = log.clone();
    let svc = service_fn(move |_req: Request<()>| {
        let n = {
            let mut sent = sent.lock().unwrap();
            sent.push(start.elapsed());
            sent.len() - 1
        };
        let resp = answer(n);
        async move { Ok::<_, Error>(resp) }
    });
    (svc, log)
}

fn req(key: &str) -> Request<()> {
    Request::builder()
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn openai_headers_on_successes_give_the_rate_and_hold_at_zero() {
    // A 3-per-second bucket in OpenAI's header form: remaining counts down, reset is the time
    // until the bucket is full again.
    let (inner, log) = provider(|n| {
        let remaining = 2usize.saturating_sub(n);
        Response::builder()
            .header("x-ratelimit-limit-requests", "3")
            .header("x-ratelimit-remaining-requests", remaining.to_string())
            .header(
                "x-ratelimit-reset-requests",
                format!("{}ms", (3 - remaining) * 333),
            )
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    });
    let layer = ThrottleLayer::builder().build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(NormalizeLayer::new())
        .service(inner);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let observer = Observer::new(move |e| sink.lock().unwrap().push(*e));
    for _ in 0..4 {
        let mut r = req("sk-openai");
        r.extensions_mut().insert(observer.clone());
        svc.ready().await.unwrap().call(r).await.unwrap();
    }
    let rate = layer
        .store()
        .learned_rate(Some(&KeyHash::of(b"sk-openai")))
        .unwrap();
    assert!((rate - 3.0).abs() < 0.05, "{rate}");
    let events = seen.lock().unwrap().clone();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::RateLearned { key: Some(k), per_second } if *k == KeyHash::of(b"sk-openai") && (per_second - 3.0).abs() < 0.05)
        ),
        "{events:?}"
    );
    // The third answer said 0 remaining, full again in 999 ms: the fourth call waited for it.
    let sent = log.lock().unwrap().clone();
    assert!(sent[3] >= Duration::from_millis(999), "{sent:?}");
    assert!(events.contains(&Event::KeyPaused {
        key: Some(KeyHash::of(b"sk-openai")),
        pause: Duration::from_millis(999),
        cause: ErrorKind::Unknown
    }));
}

#[tokio::test(start_paused = true)]
async fn a_moonshot_429_pauses_the_key_for_its_retry_after() {
    let (inner, log) = provider(|n| {
        if n == 0 {
            Response::builder()
                .status(429)
                .header("retry-after", "2")
                .body(Full::new(Bytes::from_static(
                    br#"{"error":{"message":"Your account reached max request rate","type":"rate_limit_reached_error"}}"#,
                )))
                .unwrap()
        } else {
            Response::new(Full::new(Bytes::from_static(b"{}")))
        }
    });
    let mut svc = ServiceBuilder::new()
        .layer(ThrottleLayer::builder().build().unwrap())
        .layer(NormalizeLayer::new())
        .service(inner);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(req("sk-kimi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    svc.ready()
        .await
        .unwrap()
        .call(req("sk-kimi"))
        .await
        .unwrap();
    assert_eq!(log.lock().unwrap()[1], Duration::from_secs(2));
}
