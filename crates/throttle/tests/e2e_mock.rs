//! End to end against the towline mock provider over real HTTP on loopback (hyper-util client,
//! paused time): Throttle → Normalize → client.
//!
//! The retry layer had not landed when these were written, so a call that fails with a
//! retryable error is sent again by a small loop in the test, at once and with no backoff of
//! its own: the throttle alone must hold the retry until the provider's hint has passed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::KeyHash;
use towline_core::{Error, ErrorKind};
use towline_mock::{
    Dialect, ErrorSpec, Fault, HintForm, MockProvider, MockServer, RateLimit, RetryAfter, Script,
};
use towline_normalize::{Normalize, NormalizeLayer};
use towline_throttle::{Throttle, ThrottleLayer};

type Stack = Throttle<Normalize<Client<HttpConnector, Full<Bytes>>>>;

/// Requests already on the wire when the mock sent a hint cannot know of it: on paused time
/// they share its instant, so a millisecond excuses them and nothing else.
const IN_FLIGHT: Duration = Duration::from_millis(1);

fn stack(layer: &ThrottleLayer) -> Stack {
    let client = Client::builder(TokioExecutor::new()).build_http();
    ServiceBuilder::new()
        .layer(layer.clone())
        .layer(NormalizeLayer::new())
        .service(client)
}

fn chat(base: &str, key: &str) -> Request<Full<Bytes>> {
    Request::post(format!("{base}/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::from(
            r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap()
}

/// One logical call: sent, and sent again at once on a retryable error, up to `tries` times.
async fn call(svc: &mut Stack, base: &str, key: &str, tries: u32) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match svc.ready().await?.call(chat(base, key)).await {
            Ok(resp) => {
                resp.into_body().collect().await.map_err(Error::transport)?;
                return Ok(());
            }
            Err(e) if e.is_retryable() && attempt < tries => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `callers` concurrent callers share `calls` logical calls of `key`.
async fn run(
    layer: &ThrottleLayer,
    server: &MockServer,
    key: &'static str,
    callers: usize,
    calls: usize,
    tries: u32,
) -> Vec<Result<(), Error>> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (mut svc, next, base) = (stack(layer), next.clone(), server.base_url());
            tokio::spawn(async move {
                let mut results = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < calls {
                    results.push(call(&mut svc, &base, key, tries).await);
                }
                results
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    results
}

async fn start(builder: towline_mock::MockProviderBuilder) -> MockServer {
    builder.start().await.expect("the mock starts")
}

#[tokio::test(start_paused = true)]
async fn the_mocks_429s_pause_the_key_and_nothing_arrives_early() {
    // The server allows 4 a second, one at a time; the client believes in 20 with bursts of 5,
    // and does not adapt: only the provider's pauses keep it in line.
    let server = start(MockProvider::builder().key(
        "sk-tight",
        Script::new(Dialect::Moonshot).rate_limit(RateLimit::token_bucket(4.0, 1)),
    ))
    .await;
    let layer = ThrottleLayer::builder()
        .rate(20.0)
        .burst(5)
        .no_adaptive()
        .wait_forever()
        .build()
        .unwrap();
    let results = run(&layer, &server, "sk-tight", 4, 24, 50).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let journal = server.journal();
    assert!(
        journal.count_status(429) > 0,
        "the server's bucket was tighter"
    );
    assert_eq!(journal.early_arrivals("sk-tight", IN_FLIGHT).len(), 0);
    assert_eq!(layer.stats().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn remaining_zero_holds_the_key_until_the_window_resets() {
    let server =
        start(MockProvider::builder().key(
            "sk-window",
            Script::new(Dialect::OpenAi).rate_limit(
                RateLimit::fixed_window(3, Duration::from_secs(1)).success_headers(true),
            ),
        ))
        .await;
    let layer = ThrottleLayer::builder().no_adaptive().build().unwrap();
    let results = run(&layer, &server, "sk-window", 1, 9, 1).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let journal = server.journal();
    assert_eq!(journal.count_status(429), 0);
    assert!(journal.max_in_window("sk-window", Duration::from_secs(1)) <= 3);
    let last = journal.arrivals().last().unwrap().at - server.started_at();
    assert!(last >= Duration::from_secs(2), "{last:?}");
}

#[tokio::test(start_paused = true)]
async fn a_quota_error_for_one_key_does_not_slow_the_others() {
    let quota = ErrorSpec::new(ErrorKind::QuotaExhausted).retry_after(RetryAfter::secs(3600));
    let server = start(
        MockProvider::builder()
            .key(
                "sk-broke",
                Script::new(Dialect::Moonshot).fault(Fault::error(quota)),
            )
            .default_script(Script::new(Dialect::Moonshot)),
    )
    .await;
    let layer = ThrottleLayer::builder().rate(20.0).build().unwrap();
    let start = Instant::now();
    let (broke, a, b) = tokio::join!(
        run(&layer, &server, "sk-broke", 2, 10, 3),
        run(&layer, &server, "sk-a", 2, 10, 3),
        run(&layer, &server, "sk-b", 2, 10, 3),
    );
    assert!(
        broke
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::QuotaExhausted)
    );
    assert!(a.iter().chain(&b).all(Result::is_ok));
    let journal = server.journal();
    // The first answer blocked the key: the other calls failed locally, without a round trip
    // (the second caller's first call was already on its way).
    assert!(
        journal.attempts("sk-broke") <= 2,
        "{}",
        journal.attempts("sk-broke")
    );
    // The other keys kept their pace: ten calls at 20 a second end at 450 ms.
    for key in ["sk-a", "sk-b"] {
        let last = journal.for_key(key).map(|a| a.at - start).max().unwrap();
        assert!(last <= Duration::from_millis(460), "{key}: {last:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn six_callers_learn_a_limit_nobody_told_them() {
    // Issue 13: a server-side bucket of 10 a second, bursts of 2; six concurrent callers; no
    // configured rate. 60 calls all succeed, fewer than 15 % of attempts are refused, and none
    // is sent before a hint.
    let server = start(MockProvider::builder().key(
        "sk-kimi",
        Script::new(Dialect::Moonshot).rate_limit(RateLimit::token_bucket(10.0, 2)),
    ))
    .await;
    let layer = ThrottleLayer::builder().wait_forever().build().unwrap();
    let start = Instant::now();
    let results = run(&layer, &server, "sk-kimi", 6, 60, 20).await;
    let took = start.elapsed();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let journal = server.journal();
    let (refused, attempts) = (journal.count_status(429), journal.total());
    println!("{attempts} attempts, {refused} refused, {took:?}");
    assert!(
        (refused as f64) < 0.15 * attempts as f64,
        "{refused} of {attempts} refused"
    );
    assert_eq!(journal.early_arrivals("sk-kimi", IN_FLIGHT).len(), 0);
    // Not seconds longer than it should: 60 calls at 10 a second take 6 s, plus the first
    // pause (`Retry-After: 1`).
    assert!(took < Duration::from_secs(9), "{took:?}");
    assert_eq!(layer.stats().waiters, 0);
}

#[tokio::test(start_paused = true)]
async fn openai_style_headers_give_the_rate_and_nothing_is_refused() {
    let server =
        start(MockProvider::builder().key(
            "sk-openai",
            Script::new(Dialect::OpenAi).rate_limit(
                RateLimit::fixed_window(5, Duration::from_secs(1)).success_headers(true),
            ),
        ))
        .await;
    let layer = ThrottleLayer::builder().build().unwrap();
    let results = run(&layer, &server, "sk-openai", 1, 30, 1).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(server.journal().count_status(429), 0);
}

#[tokio::test(start_paused = true)]
async fn sporadic_429s_from_the_mock_pause_the_key_but_keep_its_pace() {
    // The mixed scenario's ordinary keys: a generous server bucket (500 a second, bursts of
    // 50), and 5 % of calls refused at random with `retry-after-ms: 100`.
    let server = start(
        MockProvider::builder().seed(7).key(
            "sk-noisy",
            Script::new(Dialect::OpenAi)
                .rate_limit(RateLimit::token_bucket(500.0, 50).hint_form(HintForm::Millis))
                .fault(
                    Fault::rate_limited(RetryAfter::millis(100).form(HintForm::Millis))
                        .probability(0.05),
                ),
        ),
    )
    .await;
    let layer = ThrottleLayer::builder().wait_forever().build().unwrap();
    // Four callers, each starting a call every 200 ms: 20 a second for 20 s.
    let start = Instant::now();
    let tasks: Vec<_> = (0..4u32)
        .map(|c| {
            let (mut svc, base) = (stack(&layer), server.base_url());
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0..100u32 {
                    let due = start + Duration::from_millis(u64::from(200 * i + 50 * c));
                    tokio::time::sleep_until(due).await;
                    results.push(call(&mut svc, &base, "sk-noisy", 20).await);
                }
                results
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    let took = start.elapsed();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let journal = server.journal();
    let refused = journal.count_status(429);
    let learned = layer.store().learned_rate(Some(&KeyHash::of(b"sk-noisy")));
    println!(
        "{} attempts, {refused} refused, {took:?}, learned {learned:?}",
        journal.total()
    );
    assert!(refused > 0, "the mock refused at random");
    assert_eq!(journal.early_arrivals("sk-noisy", IN_FLIGHT).len(), 0);
    // The key kept the pace it was asked for: the last call started at 19.95 s.
    assert!(took < Duration::from_millis(20_500), "{took:?}");
    assert!(learned.is_none_or(|r| r >= 16.0), "{learned:?}");
    assert_eq!(layer.stats().waiters, 0);
}
