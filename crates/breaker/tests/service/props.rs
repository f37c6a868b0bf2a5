//! Property: under any interleaving of calls, answers, cancellations and clock steps,
//! (1) no call reaches the provider while the circuit is open before its probe time, and
//! (2) the probes in flight are exactly the live calls admitted in the current half-open state,
//!     never more than K, and none is left once every call is gone.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::oneshot;
use tower::{Layer, Service};
use towline_breaker::BreakerHandle;
use towline_core::{CircuitState, Error, ErrorKind, FakeClock, ThrottleReason};

use crate::support::*;

const HOST: &str = "api.example.com";

/// A provider whose calls wait for the test, which can answer any of them.
#[derive(Clone, Default)]
struct Pending {
    senders: Arc<Mutex<Vec<oneshot::Sender<Answer>>>>,
}

impl Service<http::Request<()>> for Pending {
    type Response = http::Response<TestBody>;
    type Error = Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        let (tx, rx) = oneshot::channel();
        self.senders.lock().unwrap().push(tx);
        Box::pin(async move { rx.await.expect("the test keeps every sender") })
    }
}

#[derive(Debug, Clone)]
enum Op {
    Call,
    Answer {
        pick: usize,
        outcome: u8,
        hint_ms: u16,
    },
    Cancel {
        pick: usize,
    },
    Advance {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Call),
        4 => (any::<usize>(), 0..6u8, 0..3_000u16)
            .prop_map(|(pick, outcome, hint_ms)| Op::Answer { pick, outcome, hint_ms }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (0..1_500u16).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn answer(outcome: u8, hint_ms: u16) -> Answer {
    let hint = Duration::from_millis(u64::from(hint_ms));
    match outcome {
        0 => ok(),
        1 => Err(api(ErrorKind::Server, 500)),
        2 => Err(api_with_hint(ErrorKind::Overloaded, 529, hint)),
        3 => Err(api_with_hint(ErrorKind::RateLimited, 429, hint)),
        4 => Err(api(ErrorKind::QuotaExhausted, 429)),
        _ => Err(Error::throttled(ThrottleReason::WaitTooLong, None)),
    }
}

struct Live<F> {
    future: F,
    sender: oneshot::Sender<Answer>,
    /// The half-open state it was admitted in, if it is a probe.
    probe_of: Option<u64>,
}

fn state(handle: &BreakerHandle) -> (CircuitState, Option<Duration>) {
    handle
        .circuits()
        .pop()
        .map_or((CircuitState::Closed, None), |c| (c.state, c.next_probe_in))
}

fn check_probes<F>(handle: &BreakerHandle, live: &[Live<F>], half_open: u64, max: u32) {
    let in_flight = handle.probes_in_flight();
    assert!(
        in_flight <= max,
        "{in_flight} probes in flight, at most {max} allowed"
    );
    let expected = match state(handle).0 {
        CircuitState::HalfOpen => live
            .iter()
            .filter(|l| l.probe_of == Some(half_open))
            .count(),
        _ => 0,
    };
    assert_eq!(
        in_flight as usize, expected,
        "probe slots match the live probes"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn probes_are_bounded_and_open_admits_nothing_early(
        probes in 1..4u32,
        close_after in 1..4u32,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let clock = FakeClock::new();
        let layer = builder(&clock)
            .half_open_probes(probes)
            .probe_successes(close_after)
            .build()
            .unwrap();
        let handle = layer.handle();
        let provider = Pending::default();
        let mut svc = layer.layer(provider.clone());
        let mut live = Vec::new();
        let mut half_open = 0u64;
        let mut sent = 0usize;

        for op in ops {
            match op {
                Op::Call => {
                    let (before, next_probe_in) = state(&handle);
                    let mut future = start(&mut svc, req(HOST));
                    match poll_once(&mut future) {
                        Poll::Ready(Err(e)) => {
                            prop_assert_eq!(e.kind(), ErrorKind::CircuitOpen);
                            prop_assert_eq!(provider.senders.lock().unwrap().len(), sent);
                        }
                        Poll::Ready(Ok(_)) => prop_assert!(false, "nobody answered yet"),
                        Poll::Pending => {
                            let early = before == CircuitState::Open
                                && next_probe_in.is_some_and(|d| !d.is_zero());
                            prop_assert!(!early, "admitted {next_probe_in:?} before the probe time");
                            let probe_of = match before {
                                CircuitState::Closed => None,
                                CircuitState::Open => {
                                    half_open += 1;
                                    Some(half_open)
                                }
                                CircuitState::HalfOpen => Some(half_open),
                            };
                            let sender = provider.senders.lock().unwrap().pop().unwrap();
                            live.push(Live { future, sender, probe_of });
                        }
                    }
                    sent = provider.senders.lock().unwrap().len();
                }
                Op::Answer { pick, outcome, hint_ms } if !live.is_empty() => {
                    let Live { mut future, sender, .. } = live.swap_remove(pick % live.len());
                    sender.send(answer(outcome, hint_ms)).map_err(|_| ()).unwrap();
                    prop_assert!(poll_once(&mut future).is_ready());
                }
                Op::Cancel { pick } if !live.is_empty() => {
                    drop(live.swap_remove(pick % live.len()));
                }
                Op::Advance { ms } => clock.advance(Duration::from_millis(u64::from(ms))),
                Op::Answer { .. } | Op::Cancel { .. } => {}
            }
            check_probes(&handle, &live, half_open, probes);
        }
        live.clear();
        prop_assert_eq!(handle.probes_in_flight(), 0);
    }
}

/// Threads racing for probe slots never hold more than K at once.
#[test]
fn racing_threads_never_hold_more_than_k_probes() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const K: u32 = 3;
    let clock = FakeClock::new();
    let layer = builder(&clock).half_open_probes(K).build().unwrap();
    let handle = layer.handle();
    let trip = Scripted::new(|_| Err(api(ErrorKind::Server, 500)));
    let mut tripper = layer.layer(trip);
    for _ in 0..3 {
        let _ = run(&mut tripper, req(HOST));
    }
    clock.advance(Duration::from_secs(1));

    let holding = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let admitted = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let mut svc = layer.layer(Pending::default());
            let (holding, most, admitted) = (&holding, &most, &admitted);
            scope.spawn(move || {
                for _ in 0..5_000 {
                    let mut future = start(&mut svc, req(HOST));
                    if poll_once(&mut future).is_pending() {
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        admitted.fetch_add(1, Ordering::SeqCst);
                        holding.fetch_sub(1, Ordering::SeqCst);
                    }
                    // Dropping the probe gives its slot back.
                    drop(future);
                }
            });
        }
    });
    assert!(most.load(Ordering::SeqCst) <= K as usize);
    assert!(admitted.load(Ordering::SeqCst) > 0);
    assert_eq!(handle.probes_in_flight(), 0);
    assert_eq!(handle.state(HOST), Some(CircuitState::HalfOpen));
}
