//! Adaptive pacing against a simulated provider, in paused time.
//!
//! - A provider bucket the key really exceeds: the learned rate converges to within 20 % of
//!   the true limit, stays there, and recovers when the limit is raised.
//! - A provider that also refuses a few calls at random whatever the key sends (far below its
//!   true limit): the key pauses for each hint, but its learned rate and its throughput stay
//!   near the load it is offered; plain CUBIC (no background tolerated) collapses there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use towline_core::{ApiError, Error, ErrorKind, HintSource, KeyHash, RetryHint};
use towline_throttle::{Adaptive, MemoryStore, ThrottleLayer};

/// How the provider announces when to come back after its bucket refused.
#[derive(Debug, Clone, Copy)]
enum Hint {
    /// The exact time to the next token (`retry-after-ms`).
    Exact,
    /// Rounded up to whole seconds (`Retry-After: 1`, as Moonshot does).
    WholeSeconds,
}

/// Refusals whatever the rate: each call is refused with probability `p` and this hint.
#[derive(Debug, Clone, Copy)]
struct Noise {
    p: f64,
    hint: Duration,
}

/// A provider's token bucket: `rate` per second, `burst` deep; answers 429 when empty. Refuses
/// a share of calls at random on top of that when it has `noise`.
struct Provider {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    hint: Hint,
    noise: Option<Noise>,
    rng: fastrand::Rng,
    accepted: u64,
    /// Refused by the bucket.
    rejected: u64,
    /// Refused at random.
    noisy: u64,
}

impl Provider {
    fn new(rate: f64, burst: f64, start: Instant) -> Self {
        Provider {
            rate,
            burst,
            tokens: burst,
            at: start,
            hint: Hint::Exact,
            noise: None,
            rng: fastrand::Rng::with_seed(7),
            accepted: 0,
            rejected: 0,
            noisy: 0,
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if let Some(noise) = self.noise
            && self.rng.f64() < noise.p
        {
            self.noisy += 1;
            return Err(noise.hint);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.accepted += 1;
            return Ok(());
        }
        self.rejected += 1;
        let exact = (1.0 - self.tokens) / self.rate;
        Err(match self.hint {
            Hint::Exact => Duration::from_secs_f64(exact),
            Hint::WholeSeconds => Duration::from_secs(exact.ceil().max(1.0) as u64),
        })
    }

    /// The share of attempts its bucket refused.
    fn refused_share(&self) -> f64 {
        self.rejected as f64 / (self.accepted + self.rejected + self.noisy) as f64
    }
}

/// How the key is loaded.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many callers calling in a loop, each sending its next call when the last ended.
    Callers(usize),
    /// New logical calls at this rate, whatever happens to the earlier ones; each is sent
    /// again at once on a refusal (the throttle holds it for the hint) until it succeeds.
    Offered(f64),
}

struct Run {
    /// (seconds since start, learned rate) every 100 ms.
    samples: Vec<(f64, f64)>,
    /// Seconds since start at which each call was accepted.
    accepted: Arc<Mutex<Vec<f64>>>,
    /// How long each logical call took, refusals and waits included.
    latencies: Arc<Mutex<Vec<f64>>>,
    provider: Arc<Mutex<Provider>>,
}

impl Run {
    fn learned_between(&self, from: f64, to: f64) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|&(_, r)| r)
            .collect()
    }

    fn accepted_between(&self, from: f64, to: f64) -> usize {
        let accepted = self.accepted.lock().unwrap();
        accepted.iter().filter(|t| (from..to).contains(*t)).count()
    }

    fn latency_quantile(&self, q: f64) -> f64 {
        let mut l = self.latencies.lock().unwrap().clone();
        l.sort_by(f64::total_cmp);
        l[((l.len() - 1) as f64 * q) as usize]
    }
}

struct Sim {
    rate: f64,
    burst: f64,
    hint: Hint,
    noise: Option<Noise>,
    /// The limit changes to `.1` at `.0` seconds.
    raise: Option<(f64, f64)>,
    load: Load,
    seconds: f64,
    adaptive: Adaptive,
}

impl Sim {
    fn new(rate: f64, burst: f64, load: Load, seconds: f64) -> Self {
        Sim {
            rate,
            burst,
            hint: Hint::Exact,
            noise: None,
            raise: None,
            load,
            seconds,
            adaptive: Adaptive::default(),
        }
    }

    async fn run(self) -> Run {
        let start = Instant::now();
        let provider = Arc::new(Mutex::new(Provider {
            hint: self.hint,
            noise: self.noise,
            ..Provider::new(self.rate, self.burst, start)
        }));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let service = {
            let (provider, accepted) = (provider.clone(), accepted.clone());
            service_fn(move |_req: Request<()>| {
                let answer = provider.lock().unwrap().take(Instant::now());
                if answer.is_ok() {
                    accepted.lock().unwrap().push(start.elapsed().as_secs_f64());
                }
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
        let layer = ThrottleLayer::builder()
            .adaptive(self.adaptive)
            .wait_forever()
            .build()
            .unwrap();
        let svc = ServiceBuilder::new().layer(layer.clone()).service(service);
        let end = start + Duration::from_secs_f64(self.seconds);
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let load = {
            let latencies = latencies.clone();
            tokio::spawn(async move {
                match self.load {
                    Load::Callers(n) => {
                        let callers: Vec<_> = (0..n)
                            .map(|_| {
                                let (svc, latencies) = (svc.clone(), latencies.clone());
                                tokio::spawn(async move {
                                    while Instant::now() < end {
                                        let _ = send(svc.clone(), 1, &latencies).await;
                                    }
                                })
                            })
                            .collect();
                        for caller in callers {
                            caller.await.unwrap();
                        }
                    }
                    Load::Offered(per_second) => {
                        let mut calls = Vec::new();
                        let mut next = Instant::now();
                        while next < end {
                            tokio::time::sleep_until(next).await;
                            let (svc, latencies) = (svc.clone(), latencies.clone());
                            calls.push(tokio::spawn(async move {
                                send(svc, 100, &latencies).await.unwrap();
                            }));
                            next += Duration::from_secs_f64(1.0 / per_second);
                        }
                        for call in calls {
                            call.await.unwrap();
                        }
                    }
                }
            })
        };
        let key = KeyHash::of(b"sk-sim");
        let store: &MemoryStore<KeyHash> = layer.store();
        let mut samples = Vec::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = start.elapsed().as_secs_f64();
            if let Some((at, to)) = self.raise
                && t >= at
            {
                provider.lock().unwrap().rate = to;
            }
            samples.push((t, store.learned_rate(Some(&key)).unwrap_or(f64::INFINITY)));
        }
        load.await.unwrap();
        assert_eq!(layer.stats().waiters, 0);
        Run {
            samples,
            accepted,
            latencies,
            provider,
        }
    }
}

/// One logical call, sent up to `tries` times until it succeeds; records how long it took.
async fn send<S>(mut svc: S, tries: usize, latencies: &Mutex<Vec<f64>>) -> Result<(), Error>
where
    S: Service<Request<()>, Response = Response<()>, Error = Error>,
{
    let start = Instant::now();
    let mut result = Ok(());
    for _ in 0..tries {
        let req = Request::builder()
            .header("authorization", "Bearer sk-sim")
            .body(())
            .unwrap();
        result = svc.ready().await?.call(req).await.map(drop);
        if result.is_ok() {
            latencies
                .lock()
                .unwrap()
                .push(start.elapsed().as_secs_f64());
            break;
        }
    }
    result
}

/// `callers` loop calling one key for `seconds`; the limit changes to `raise.1` at `raise.0`.
async fn simulate(rate: f64, raise: Option<(f64, f64)>, callers: usize, seconds: f64) -> Run {
    Sim {
        raise,
        ..Sim::new(rate, 2.0, Load::Callers(callers), seconds)
    }
    .run()
    .await
}

async fn simulate_burst(rate: f64, burst: f64, callers: usize, seconds: f64) -> Run {
    Sim::new(rate, burst, Load::Callers(callers), seconds)
        .run()
        .await
}

fn within(rates: &[f64], target: f64, tolerance: f64) -> bool {
    rates
        .iter()
        .all(|r| (r - target).abs() <= tolerance * target)
}

fn range(rates: &[f64]) -> (f64, f64) {
    rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)))
}

fn mean(rates: &[f64]) -> f64 {
    rates.iter().sum::<f64>() / rates.len() as f64
}

#[tokio::test(start_paused = true)]
async fn the_learned_rate_converges_within_20_percent_and_stays() {
    let run = simulate(10.0, None, 6, 60.0).await;
    let p = run.provider.lock().unwrap();
    let settled = run.learned_between(15.0, 60.0);
    let (lo, hi) = range(&settled);
    println!(
        "accepted {} rejected {} learned in [{lo:.2}, {hi:.2}]",
        p.accepted, p.rejected
    );
    assert!(within(&settled, 10.0, 0.2), "{:?}", run.samples);
    assert!(p.refused_share() < 0.05, "{}", p.refused_share());
}

#[tokio::test(start_paused = true)]
async fn the_learned_rate_recovers_when_the_limit_is_raised() {
    let run = simulate(10.0, Some((40.0, 20.0)), 6, 100.0).await;
    let p = run.provider.lock().unwrap();
    let before = run.learned_between(15.0, 40.0);
    let after = run.learned_between(70.0, 100.0);
    println!(
        "accepted {} rejected {}; after raise: {:?}",
        p.accepted,
        p.rejected,
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
        let run = simulate_burst(rate, burst, callers, 120.0).await;
        let p = run.provider.lock().unwrap();
        let settled = run.learned_between(60.0, 120.0);
        let (lo, hi) = range(&settled);
        let share = p.refused_share();
        println!(
            "R={rate} b={burst} callers={callers}: learned in [{lo:.2}, {hi:.2}], {:.1} % refused",
            share * 100.0
        );
        assert!(within(&settled, rate, 0.3), "R={rate}: {settled:?}");
        assert!(share < 0.15, "R={rate}: {share}");
    }
}

/// A provider that announces its waits in whole seconds (its bucket refills long before the
/// pause ends, so refusals come one per pause, never in bursts): the limit is still found.
#[tokio::test(start_paused = true)]
async fn a_limit_announced_in_whole_seconds_is_found_too() {
    let run = Sim {
        hint: Hint::WholeSeconds,
        ..Sim::new(10.0, 2.0, Load::Callers(6), 60.0)
    }
    .run()
    .await;
    let p = run.provider.lock().unwrap();
    let settled = run.learned_between(20.0, 60.0);
    let (lo, hi) = range(&settled);
    let throughput = run.accepted_between(20.0, 60.0) as f64 / 40.0;
    println!(
        "learned in [{lo:.2}, {hi:.2}], {throughput:.1}/s, {:.1} % refused",
        p.refused_share() * 100.0
    );
    assert!(within(&settled, 10.0, 0.25), "{settled:?}");
    assert!(p.refused_share() < 0.1, "{}", p.refused_share());
    // Each refusal costs a whole second's pause: the price of coarse hints.
    assert!(throughput > 6.0, "{throughput}");
}

/// The provider's true limit (1000 a second) is far above the load, but it refuses 5 % or
/// 10 % of calls at random with a short hint. Each refusal pauses the key for its hint; the
/// learned rate and the throughput stay at the offered load (at least 80 % of it, every
/// moment and every 5 s after the first 5 s), and no call waits long (before background
/// refusals were told apart, calls queued for tens of seconds here).
#[tokio::test(start_paused = true)]
async fn sporadic_429s_leave_the_rate_near_the_offered_load() {
    for (p, hint_ms, offered) in [(0.05, 100, 20.0), (0.10, 100, 20.0), (0.05, 20, 100.0)] {
        let run = Sim {
            noise: Some(Noise {
                p,
                hint: Duration::from_millis(hint_ms),
            }),
            ..Sim::new(1000.0, 50.0, Load::Offered(offered), 60.0)
        }
        .run()
        .await;
        let provider = run.provider.lock().unwrap();
        let learned = run.learned_between(5.0, 60.0);
        let (lo, hi) = range(&learned);
        let windows: Vec<f64> = (1..12)
            .map(|w| run.accepted_between(5.0 * w as f64, 5.0 * (w + 1) as f64) as f64 / 5.0)
            .collect();
        let slowest = windows.iter().copied().fold(f64::MAX, f64::min);
        let p99 = run.latency_quantile(0.99);
        println!(
            "p={p} hint={hint_ms}ms offered {offered}/s: {} random refusals, learned in \
             [{lo:.1}, {hi:.1}] (mean {:.1}), slowest 5 s window {slowest:.1}/s, p99 {p99:.2} s",
            provider.noisy,
            mean(&learned),
        );
        assert!(provider.noisy > 0 && provider.rejected == 0);
        assert!(lo >= 0.8 * offered, "p={p}: {learned:?}");
        assert!(slowest >= 0.8 * offered, "p={p}: {windows:?}");
        assert!(p99 < 2.0, "p={p}: {p99}");
    }
}

/// The same refusals (10 %) with no background tolerated (`max_background(0.0)`: every
/// refusal cuts, as plain CUBIC does): the rate collapses far below the offered load, the
/// problem the background solves.
#[tokio::test(start_paused = true)]
async fn with_no_background_tolerated_the_same_429s_pull_the_rate_below_the_load() {
    let run = Sim {
        noise: Some(Noise {
            p: 0.10,
            hint: Duration::from_millis(100),
        }),
        adaptive: Adaptive::default().max_background(0.0),
        ..Sim::new(1000.0, 50.0, Load::Offered(20.0), 30.0)
    }
    .run()
    .await;
    let late = run.learned_between(10.0, 30.0);
    let (lo, _) = range(&late);
    println!(
        "learned {:.1} on average from 10 s, down to {lo:.1}",
        mean(&late)
    );
    assert!(mean(&late) < 0.8 * 20.0, "{late:?}");
    assert!(lo < 0.6 * 20.0, "{late:?}");
}

/// A true limit under a 5 % background of random refusals: the limit is still learned, and
/// the key's rate-limit refusals stay few.
#[tokio::test(start_paused = true)]
async fn a_true_limit_is_still_learned_under_sporadic_429s() {
    let run = Sim {
        noise: Some(Noise {
            p: 0.05,
            hint: Duration::from_millis(100),
        }),
        ..Sim::new(10.0, 2.0, Load::Callers(6), 60.0)
    }
    .run()
    .await;
    let p = run.provider.lock().unwrap();
    let settled = run.learned_between(20.0, 60.0);
    let (lo, hi) = range(&settled);
    let throughput = run.accepted_between(20.0, 60.0) as f64 / 40.0;
    println!(
        "learned in [{lo:.2}, {hi:.2}] (mean {:.2}), {throughput:.1}/s, {:.1} % refused by the \
         bucket, {} at random",
        mean(&settled),
        p.refused_share() * 100.0,
        p.noisy
    );
    assert!((mean(&settled) - 10.0).abs() < 0.25 * 10.0, "{settled:?}");
    assert!(throughput >= 8.5, "{throughput}");
    assert!(p.refused_share() < 0.15, "{}", p.refused_share());
}
