//! Adaptive pacing against a simulated provider bucket, in paused time: the learned rate
//! converges to within 20 % of the true limit, stays there, and recovers when the limit is
//! raised.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use towline_core::{ApiError, Error, ErrorKind, HintSource, KeyHash, RetryHint};
use towline_throttle::{MemoryStore, ThrottleLayer};

/// A provider's token bucket: `rate` per second, `burst` deep. Answers 429 with the exact time
/// until the next token (`retry-after-ms` precision) when empty.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    accepted: u64,
    rejected: u64,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.accepted += 1;
            Ok(())
        } else {
            self.rejected += 1;
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

struct Run {
    /// (seconds since start, learned rate) every 100 ms.
    samples: Vec<(f64, f64)>,
    bucket: Arc<Mutex<Bucket>>,
}

impl Run {
    fn learned_between(&self, from: f64, to: f64) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|&(_, r)| r)
            .collect()
    }
}

/// `callers` loop calling one key for `seconds`; the limit changes to `raise.1` at `raise.0`.
async fn simulate(rate: f64, raise: Option<(f64, f64)>, callers: usize, seconds: f64) -> Run {
    simulate_burst(rate, 2.0, raise, callers, seconds).await
}

async fn simulate_burst(
    rate: f64,
    burst: f64,
    raise: Option<(f64, f64)>,
    callers: usize,
    seconds: f64,
) -> Run {
    let start = Instant::now();
    let bucket = Arc::new(Mutex::new(Bucket {
        rate,
        burst,
        tokens: burst,
        at: start,
        accepted: 0,
        rejected: 0,
    }));
    let provider = {
        let bucket = bucket.clone();
        service_fn(move |_req: Request<()>| {
            let answer = bucket.lock().unwrap().take(Instant::now());
            async move {
                // A round trip of 30 ms.
                tokio::time::sleep(Duration::from_millis(30)).await;
                match answer {
                    Ok(()) => Ok(Response::new(())),
                    Err(hint) => Err(Error::from(
                        ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
                            .with_retry_hint(RetryHint::new(hint, HintSource::RetryAfterMs)),
                    )),
                }
            }
        })
    };
    let layer = ThrottleLayer::builder().wait_forever().build().unwrap();
    let svc = ServiceBuilder::new().layer(layer.clone()).service(provider);
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let req = Request::builder()
                    .header("authorization", "Bearer sk-sim")
                    .body(())
                    .unwrap();
                let _ = svc.ready().await.unwrap().call(req).await;
            }
        }));
    }
    let key = KeyHash::of(b"sk-sim");
    let mut samples = Vec::new();
    let store: &MemoryStore<KeyHash> = layer.store();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = start.elapsed().as_secs_f64();
        if let Some((at, to)) = raise
            && t >= at
        {
            bucket.lock().unwrap().rate = to;
        }
        samples.push((t, store.learned_rate(Some(&key)).unwrap_or(f64::INFINITY)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Run { samples, bucket }
}

fn within(rates: &[f64], target: f64, tolerance: f64) -> bool {
    rates
        .iter()
        .all(|r| (r - target).abs() <= tolerance * target)
}

#[tokio::test(start_paused = true)]
async fn the_learned_rate_converges_within_20_percent_and_stays() {
    let run = simulate(10.0, None, 6, 60.0).await;
    let b = run.bucket.lock().unwrap();
    let settled = run.learned_between(15.0, 60.0);
    let (lo, hi) = settled
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
    println!(
        "accepted {} rejected {} learned in [{lo:.2}, {hi:.2}]",
        b.accepted, b.rejected
    );
    assert!(within(&settled, 10.0, 0.2), "{:?}", run.samples);
    let share = b.rejected as f64 / (b.accepted + b.rejected) as f64;
    assert!(share < 0.05, "{share}");
}

#[tokio::test(start_paused = true)]
async fn the_learned_rate_recovers_when_the_limit_is_raised() {
    let run = simulate(10.0, Some((40.0, 20.0)), 6, 100.0).await;
    let b = run.bucket.lock().unwrap();
    let before = run.learned_between(15.0, 40.0);
    let after = run.learned_between(70.0, 100.0);
    println!(
        "accepted {} rejected {}; after raise: {:?}",
        b.accepted,
        b.rejected,
        &after[..10]
    );
    assert!(within(&before, 10.0, 0.2), "{before:?}");
    assert!(within(&after, 20.0, 0.2), "{after:?}");
}

/// Other shapes of provider bucket (slow, fast, deep bursts, one or many callers): the rate
/// settles near the limit and few calls are refused.
#[tokio::test(start_paused = true)]
async fn the_learned_rate_settles_for_many_provider_shapes() {
    for (rate, burst, callers) in [
        (2.0, 1.0, 3),
        (50.0, 10.0, 20),
        (10.0, 2.0, 1),
        (0.5, 1.0, 4),
        (10.0, 20.0, 6),
    ] {
        let run = simulate_burst(rate, burst, None, callers, 120.0).await;
        let b = run.bucket.lock().unwrap();
        let settled = run.learned_between(60.0, 120.0);
        let (lo, hi) = settled
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
        let share = b.rejected as f64 / (b.accepted + b.rejected) as f64;
        println!(
            "R={rate} b={burst} callers={callers}: learned in [{lo:.2}, {hi:.2}], {:.1} % refused",
            share * 100.0
        );
        assert!(within(&settled, rate, 0.3), "R={rate}: {settled:?}");
        assert!(share < 0.15, "R={rate}: {share}");
    }
}
