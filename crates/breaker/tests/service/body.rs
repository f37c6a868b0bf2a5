//! Failures that arrive inside a streamed body, and probe slots held by bodies.

use std::task::Poll;
use std::time::Duration;

use tower::Layer;
use towline_breaker::BreakerHandle;
use towline_core::{CircuitState, Error, ErrorKind, FakeClock};

use crate::support::*;

const HOST: &str = "stream.example.com";

fn broken_stream() -> Error {
    Error::stream_interrupted(api(ErrorKind::Server, 200))
}

/// Trips the circuit of `HOST` with three server errors through a `Held` provider.
fn trip<S>(svc: &mut S, provider: &Held)
where
    S: tower::Service<http::Request<()>, Error = Error>,
    S::Future: Unpin,
{
    for _ in 0..3 {
        let mut call = start(svc, req(HOST));
        provider.answer_next(Err(api(ErrorKind::Server, 500)));
        assert!(matches!(poll_once(&mut call), Poll::Ready(Err(_))));
    }
}

fn snapshot(handle: &BreakerHandle) -> towline_breaker::CircuitSnapshot {
    handle.circuits().pop().expect("one circuit")
}

#[test]
fn a_stream_interrupted_in_the_body_counts_as_one_failed_call() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|_| {
        ok_streaming(vec![Ok("data: {\"choices\":[]}\n\n"), Err(broken_stream())])
    }));
    for i in 0..3 {
        let err = run(&mut svc, req(HOST)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StreamInterrupted, "call {i}");
    }
    assert_eq!(handle.state(HOST), Some(CircuitState::Open));
    let err = run(&mut svc, req(HOST)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
}

#[test]
fn late_failures_do_not_count_the_call_twice() {
    let clock = FakeClock::new();
    let layer = builder(&clock)
        .consecutive_failures(None)
        .min_calls(100)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|_| {
        ok_streaming(vec![Ok("a"), Ok("b"), Err(broken_stream())])
    }));
    for _ in 0..3 {
        let _ = run(&mut svc, req(HOST));
    }
    let s = snapshot(&handle);
    assert_eq!((s.window_calls, s.window_failures), (3, 3));
}

#[test]
fn a_body_error_before_any_frame_is_classified_like_a_call_error() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|_| {
        ok_streaming(vec![Err(api(ErrorKind::Overloaded, 200))])
    }));
    let _ = run(&mut svc, req(HOST));
    let s = snapshot(&handle);
    assert_eq!((s.window_calls, s.window_failures), (1, 1));

    // A 4xx-class error in a body is an answer, not a failure.
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|_| {
        ok_streaming(vec![Err(api(ErrorKind::ContentFiltered, 200))])
    }));
    for _ in 0..10 {
        let _ = run(&mut svc, req(HOST));
    }
    let s = snapshot(&handle);
    assert_eq!(
        (s.state, s.window_calls, s.window_failures),
        (CircuitState::Closed, 10, 0)
    );
}

#[test]
fn the_first_frame_of_a_probe_frees_its_slot_before_the_stream_ends() {
    let clock = FakeClock::new();
    let layer = builder(&clock).half_open_probes(1).build().unwrap();
    let handle = layer.handle();
    let provider = Held::default();
    let mut svc = layer.layer(provider.clone());
    trip(&mut svc, &provider);
    clock.advance(Duration::from_secs(1));

    let mut probe = start(&mut svc, req(HOST));
    provider.answer_next(Ok(http::Response::new(TestBody::then_pending(vec![
        "data: hi",
    ]))));
    let Poll::Ready(Ok(response)) = poll_once(&mut probe) else {
        panic!("probe answered")
    };
    let mut body = response.into_body();
    assert_eq!(
        handle.probes_in_flight(),
        1,
        "head only: the body may still fail"
    );
    let mut other = start(&mut svc, req(HOST));
    assert!(matches!(poll_once(&mut other), Poll::Ready(Err(_))));

    assert!(matches!(poll_frame(&mut body), Poll::Ready(Some(Ok(_)))));
    let s = snapshot(&handle);
    assert_eq!((s.probes_in_flight, s.probe_successes), (0, 1));
    let mut next = start(&mut svc, req(HOST));
    assert!(
        poll_once(&mut next).is_pending(),
        "the next probe is admitted"
    );
    // The stream goes on; nothing more is recorded for it.
    assert!(poll_frame(&mut body).is_pending());
    drop(body);
    assert_eq!(snapshot(&handle).probe_successes, 1);
}

#[test]
fn a_dropped_body_counts_as_a_success_and_releases_the_slot() {
    let clock = FakeClock::new();
    let layer = builder(&clock)
        .half_open_probes(1)
        .probe_successes(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let provider = Held::default();
    let mut svc = layer.layer(provider.clone());
    trip(&mut svc, &provider);
    clock.advance(Duration::from_secs(1));

    let mut probe = start(&mut svc, req(HOST));
    provider.answer_next(Ok(http::Response::new(TestBody::then_pending(vec![]))));
    let Poll::Ready(Ok(response)) = poll_once(&mut probe) else {
        panic!("probe answered")
    };
    assert_eq!(handle.probes_in_flight(), 1);
    drop(response);
    assert_eq!(handle.probes_in_flight(), 0);
    assert_eq!(handle.state(HOST), Some(CircuitState::Closed));
}

#[test]
fn a_probe_whose_stream_breaks_after_its_first_frame_reopens_the_circuit() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap(); // 2 probes, 2 successes
    let handle = layer.handle();
    let provider = Held::default();
    let mut svc = layer.layer(provider.clone());
    trip(&mut svc, &provider);
    clock.advance(Duration::from_secs(1));

    let mut probe = start(&mut svc, req(HOST));
    provider.answer_next(ok_streaming(vec![
        Ok("data: partial"),
        Err(broken_stream()),
    ]));
    let Poll::Ready(Ok(response)) = poll_once(&mut probe) else {
        panic!("probe answered")
    };
    let mut body = response.into_body();
    assert!(matches!(poll_frame(&mut body), Poll::Ready(Some(Ok(_)))));
    assert_eq!(snapshot(&handle).probe_successes, 1);
    match poll_frame(&mut body) {
        Poll::Ready(Some(Err(e))) => assert_eq!(e.kind(), ErrorKind::StreamInterrupted),
        other => panic!("{other:?}"),
    }
    let s = snapshot(&handle);
    assert_eq!(s.state, CircuitState::Open);
    assert_eq!(
        s.next_probe_in,
        Some(Duration::from_secs(2)),
        "re-opened for longer"
    );
}

#[test]
fn bodies_of_closed_calls_hold_nothing() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|_| {
        Ok(http::Response::new(TestBody::then_pending(vec!["x"])))
    }));
    let mut bodies = Vec::new();
    for _ in 0..50 {
        let mut call = start(&mut svc, req(HOST));
        let Poll::Ready(Ok(response)) = poll_once(&mut call) else {
            panic!()
        };
        bodies.push(response.into_body());
    }
    assert_eq!(
        snapshot(&handle).window_calls,
        0,
        "counted at the first frame"
    );
    for body in &mut bodies {
        assert!(matches!(poll_frame(body), Poll::Ready(Some(Ok(_)))));
    }
    assert_eq!(snapshot(&handle).window_calls, 50);
    drop(bodies);
    assert_eq!(
        snapshot(&handle).window_calls,
        50,
        "dropping after a frame adds nothing"
    );
}
