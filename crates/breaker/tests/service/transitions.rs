//! Every transition of the state machine, through the service.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tower::{Layer, ServiceBuilder};
use towline_breaker::Transition;
use towline_core::event::Event;
use towline_core::{CircuitState, Error, ErrorKind, FakeClock};

use crate::support::*;

const HOST: &str = "api.example.com";

fn switchable() -> (Scripted, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    let provider = Scripted::new(move |_| {
        if flag.load(Ordering::SeqCst) {
            Err(api(ErrorKind::Server, 500))
        } else {
            ok()
        }
    });
    (provider, down)
}

fn kind_of(result: Result<(), Error>) -> Option<ErrorKind> {
    result.err().map(|e| e.kind())
}

/// One transition as the user callback heard it, owned.
type Heard = (
    String,
    CircuitState,
    CircuitState,
    Option<Duration>,
    Option<ErrorKind>,
);

/// Collects every transition the user callback hears.
#[derive(Clone, Default)]
struct Transitions(Arc<Mutex<Vec<Heard>>>);

impl Transitions {
    fn hook(&self) -> impl Fn(&Transition<'_>) + Send + Sync + 'static {
        let sink = self.0.clone();
        move |t| {
            sink.lock()
                .unwrap()
                .push((t.key.to_owned(), t.from, t.to, t.open_for, t.cause))
        }
    }

    fn states(&self) -> Vec<(CircuitState, CircuitState)> {
        self.0.lock().unwrap().iter().map(|t| (t.1, t.2)).collect()
    }
}

#[test]
fn consecutive_failures_open_it_and_calls_then_fail_fast_without_reaching_the_provider() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let (provider, down) = switchable();
    let mut svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let recorder = Recorder::default();
    let observer = recorder.observer();

    run(&mut svc, observed(HOST, &observer)).unwrap();
    down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(
            kind_of(run(&mut svc, observed(HOST, &observer))),
            Some(ErrorKind::Server)
        );
    }
    assert_eq!(handle.state(HOST), Some(CircuitState::Open));
    assert_eq!(provider.calls(), 4);

    let err = run(&mut svc, observed(HOST, &observer)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_millis(400));
    let err = run(&mut svc, observed(HOST, &observer)).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_millis(600)));
    assert_eq!(
        provider.calls(),
        4,
        "rejected calls never reach the provider"
    );

    assert_eq!(
        recorder.events(),
        [
            Event::BreakerTransition {
                from: CircuitState::Closed,
                to: CircuitState::Open
            },
            Event::BreakerRejected {
                retry_after: Duration::from_secs(1)
            },
            Event::BreakerRejected {
                retry_after: Duration::from_millis(600)
            },
        ]
    );
}

#[test]
fn failure_ratio_over_the_minimum_calls_opens_it() {
    let clock = FakeClock::new();
    let layer = builder(&clock).consecutive_failures(None).build().unwrap();
    let handle = layer.handle();
    // S F S S F F: the ratio reaches 0.5 at the sixth call.
    let script = Arc::new(Mutex::new(VecDeque::from([
        false, true, false, false, true, true,
    ])));
    let provider = Scripted::new(move |_| {
        if script.lock().unwrap().pop_front().unwrap() {
            Err(api(ErrorKind::Overloaded, 529))
        } else {
            ok()
        }
    });
    let mut svc = layer.layer(provider);
    let mut states = Vec::new();
    for _ in 0..6 {
        let _ = run(&mut svc, req(HOST));
        clock.advance(Duration::from_millis(50));
        let s = handle.circuits().pop().unwrap();
        states.push((s.state, s.window_calls, s.window_failures));
    }
    use CircuitState::*;
    assert_eq!(
        states,
        [
            (Closed, 1, 0),
            (Closed, 2, 1),
            (Closed, 3, 1),
            (Closed, 4, 1),
            (Closed, 5, 2), // 0.4
            (Open, 0, 0),   // 0.5 over at least 4 calls
        ]
    );
}

#[test]
fn failures_age_out_of_the_window() {
    let clock = FakeClock::new();
    let layer = builder(&clock).consecutive_failures(None).build().unwrap();
    let handle = layer.handle();
    let (provider, down) = switchable();
    let mut svc = layer.layer(provider);
    down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let _ = run(&mut svc, req(HOST));
    }
    // Those three failures leave the 1 s window before the next ones arrive.
    clock.advance(Duration::from_millis(1_100));
    down.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        run(&mut svc, req(HOST)).unwrap();
    }
    down.store(true, Ordering::SeqCst);
    let _ = run(&mut svc, req(HOST));
    let snapshot = handle.circuits().pop().unwrap();
    assert_eq!((snapshot.window_calls, snapshot.window_failures), (4, 1));
    assert_eq!(snapshot.state, CircuitState::Closed);
}

#[test]
fn client_errors_rate_limits_quota_and_local_decisions_never_open_it() {
    let clock = FakeClock::new();
    let layer = builder(&clock).min_calls(1).build().unwrap();
    let handle = layer.handle();
    let answered = [
        (ErrorKind::InvalidRequest, 400),
        (ErrorKind::Authentication, 401),
        (ErrorKind::PermissionDenied, 403),
        (ErrorKind::QuotaExhausted, 403),
        (ErrorKind::NotFound, 404),
        (ErrorKind::Conflict, 409),
        (ErrorKind::PayloadTooLarge, 413),
        (ErrorKind::ContextLengthExceeded, 400),
        (ErrorKind::ContentFiltered, 400),
        (ErrorKind::RateLimited, 429),
        (ErrorKind::QuotaExhausted, 429),
        (ErrorKind::Unknown, 200),
    ];
    for (kind, status) in answered {
        let mut svc = layer.layer(Scripted::new(move |_| {
            Err(api_with_hint(kind, status, Duration::from_secs(30)))
        }));
        for _ in 0..20 {
            assert_eq!(kind_of(run(&mut svc, req(HOST))), Some(kind));
        }
    }
    let snapshot = handle.circuits().pop().unwrap();
    assert_eq!(snapshot.state, CircuitState::Closed);
    assert_eq!(snapshot.window_failures, 0);
    assert_eq!(
        snapshot.window_calls,
        20 * 12,
        "a provider that answers is alive"
    );

    let locals = [
        Error::circuit_open(Duration::from_secs(1)),
        Error::throttled(towline_core::ThrottleReason::WaitTooLong, None),
        Error::deadline_exceeded(1, None),
    ];
    for local in locals {
        let kind = local.kind();
        let shared = Arc::new(Mutex::new(Some(local)));
        let mut svc = layer.layer(Scripted::new(move |_| {
            let err = shared.lock().unwrap().take();
            Err(err.unwrap_or_else(|| Error::circuit_open(Duration::ZERO)))
        }));
        assert_eq!(kind_of(run(&mut svc, req(HOST))), Some(kind));
    }
    let snapshot = handle.circuits().pop().unwrap();
    assert_eq!(
        snapshot.window_calls,
        20 * 12,
        "local decisions are not counted"
    );
    assert_eq!(snapshot.state, CircuitState::Closed);
}

#[test]
fn half_open_admits_at_most_k_probes_and_m_successes_close_it() {
    let clock = FakeClock::new();
    let transitions = Transitions::default();
    let layer = builder(&clock)
        .on_transition(transitions.hook())
        .build()
        .unwrap();
    let handle = layer.handle();
    let provider = Held::default();
    let mut svc = layer.layer(provider.clone());

    for _ in 0..3 {
        let mut call = start(&mut svc, req(HOST));
        provider.answer_next(Err(api(ErrorKind::Timeout, 504)));
        assert!(matches!(poll_once(&mut call), Poll::Ready(Err(_))));
    }
    assert_eq!(handle.state(HOST), Some(CircuitState::Open));
    clock.advance(Duration::from_secs(1));

    let mut a = start(&mut svc, req(HOST));
    let mut b = start(&mut svc, req(HOST));
    assert!(poll_once(&mut a).is_pending());
    assert!(poll_once(&mut b).is_pending());
    assert_eq!(handle.probes_in_flight(), 2);
    let mut c = start(&mut svc, req(HOST));
    match poll_once(&mut c) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::CircuitOpen),
        other => panic!("third probe admitted: {other:?}"),
    }
    assert_eq!(provider.calls(), 5);

    // First probe succeeds: one slot frees, the circuit stays half-open.
    provider.answer_next(ok());
    assert!(matches!(poll_once(&mut a), Poll::Ready(Ok(_))));
    assert_eq!(handle.state(HOST), Some(CircuitState::HalfOpen));
    let mut d = start(&mut svc, req(HOST));
    assert!(
        poll_once(&mut d).is_pending(),
        "a freed slot admits the next probe"
    );
    assert_eq!(provider.calls(), 6);

    // Second success closes it; the third probe's answer no longer matters.
    provider.answer_next(ok());
    assert!(matches!(poll_once(&mut b), Poll::Ready(Ok(_))));
    assert_eq!(handle.state(HOST), Some(CircuitState::Closed));
    provider.answer_next(Err(api(ErrorKind::Server, 500)));
    assert!(matches!(poll_once(&mut d), Poll::Ready(Err(_))));
    assert_eq!(handle.state(HOST), Some(CircuitState::Closed));
    assert_eq!(handle.probes_in_flight(), 0);

    use CircuitState::*;
    assert_eq!(
        transitions.states(),
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
    let first = transitions.0.lock().unwrap()[0].clone();
    assert_eq!(first.0, HOST);
    assert_eq!(first.3, Some(Duration::from_secs(1)));
    assert_eq!(first.4, Some(ErrorKind::Timeout));
}

#[test]
fn a_failed_probe_reopens_for_longer_each_time_up_to_the_cap() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let (provider, down) = switchable();
    let mut svc = layer.layer(provider.clone());
    down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let _ = run(&mut svc, req(HOST));
    }
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = run(&mut svc, req(HOST)).unwrap_err().retry_after().unwrap();
        waits.push(wait.as_secs());
        clock.advance(wait);
        // The probe fails.
        assert_eq!(kind_of(run(&mut svc, req(HOST))), Some(ErrorKind::Server));
    }
    assert_eq!(waits, [1, 2, 4, 8, 8]);
    // Recovery: the probes succeed and close it.
    down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(8));
    run(&mut svc, req(HOST)).unwrap();
    run(&mut svc, req(HOST)).unwrap();
    assert_eq!(layer.handle().state(HOST), Some(CircuitState::Closed));
    assert_eq!(provider.calls(), 3 + 5 + 2);
}

#[test]
fn a_dropped_probe_future_releases_its_slot() {
    let clock = FakeClock::new();
    let layer = builder(&clock).half_open_probes(1).build().unwrap();
    let handle = layer.handle();
    let provider = Held::default();
    let mut svc = layer.layer(provider.clone());
    for _ in 0..3 {
        let mut call = start(&mut svc, req(HOST));
        provider.answer_next(Err(api(ErrorKind::Server, 502)));
        let _ = poll_once(&mut call);
    }
    clock.advance(Duration::from_secs(1));

    for round in 0..5 {
        let mut probe = start(&mut svc, req(HOST));
        assert!(
            poll_once(&mut probe).is_pending(),
            "round {round}: probe admitted"
        );
        assert_eq!(handle.probes_in_flight(), 1);
        let mut extra = start(&mut svc, req(HOST));
        assert!(matches!(poll_once(&mut extra), Poll::Ready(Err(_))));
        drop(probe);
        assert_eq!(handle.probes_in_flight(), 0, "round {round}: slot released");
        assert_eq!(handle.state(HOST), Some(CircuitState::HalfOpen));
    }
    // A call that is never polled holds the slot until dropped, too.
    let never_polled = start(&mut svc, req(HOST));
    assert_eq!(handle.probes_in_flight(), 1);
    drop(never_polled);
    assert_eq!(handle.probes_in_flight(), 0);
}

#[test]
fn the_providers_retry_after_on_503_or_529_sets_the_minimum_open_time() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let hints = Arc::new(Mutex::new(VecDeque::from([
        api(ErrorKind::Server, 500),
        api(ErrorKind::Server, 500),
        api_with_hint(ErrorKind::Overloaded, 529, Duration::from_secs(5)),
    ])));
    let mut svc = layer.layer(Scripted::new(move |_| {
        Err(hints
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| api_with_hint(ErrorKind::Server, 503, Duration::from_secs(120))))
    }));
    for _ in 0..3 {
        let _ = run(&mut svc, req(HOST));
    }
    let wait = run(&mut svc, req(HOST)).unwrap_err().retry_after();
    assert_eq!(wait, Some(Duration::from_secs(5)), "not the 1 s base");
    clock.advance(Duration::from_secs(5));
    // The probe's 503 asks for two minutes: capped at the 8 s maximum.
    let _ = run(&mut svc, req(HOST));
    let wait = run(&mut svc, req(HOST)).unwrap_err().retry_after();
    assert_eq!(wait, Some(Duration::from_secs(8)));
}

#[test]
fn a_custom_predicate_can_count_rate_limits() {
    let clock = FakeClock::new();
    let layer = builder(&clock)
        .failure_if(|e| e.kind() == ErrorKind::RateLimited)
        .build()
        .unwrap();
    let mut svc = layer.layer(Scripted::new(|_| Err(api(ErrorKind::RateLimited, 429))));
    for _ in 0..3 {
        assert_eq!(
            kind_of(run(&mut svc, req(HOST))),
            Some(ErrorKind::RateLimited)
        );
    }
    assert_eq!(
        kind_of(run(&mut svc, req(HOST))),
        Some(ErrorKind::CircuitOpen)
    );

    // And the predicate replaces the default: server errors no longer count.
    let layer = builder(&clock)
        .failure_if(|e| e.kind() == ErrorKind::RateLimited)
        .build()
        .unwrap();
    let mut svc = layer.layer(Scripted::new(|_| Err(api(ErrorKind::Server, 500))));
    for _ in 0..10 {
        assert_eq!(kind_of(run(&mut svc, req(HOST))), Some(ErrorKind::Server));
    }
}

#[test]
fn readiness_is_the_inner_services() {
    use std::task::{Context, Waker};
    use tower::Service;

    #[derive(Clone)]
    struct NotReady;
    impl Service<http::Request<()>> for NotReady {
        type Response = http::Response<TestBody>;
        type Error = Error;
        type Future = std::future::Ready<Answer>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
            Poll::Pending
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            unreachable!()
        }
    }
    let mut svc = builder(&FakeClock::new()).build().unwrap().layer(NotReady);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Service::<http::Request<()>>::poll_ready(&mut svc, &mut cx).is_pending());
}
