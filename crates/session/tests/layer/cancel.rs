//! Cancellation: whatever is dropped, wherever it is, gives back its place or its slot.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::poll;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::support::{Provider, Turn, drain, layer, request, within_an_hour};

fn streamed(head_ms: u64) -> Turn {
    Turn {
        head: Duration::from_millis(head_ms),
        chunks: 2,
        chunk_every: Duration::from_millis(10),
        ..Turn::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_line() {
    let provider = Provider::new();
    let layer = layer(1);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let running = svc
        .clone()
        .oneshot(request(Some("s"), streamed(0)))
        .await
        .unwrap();
    {
        let mut waiter = pin!(svc.clone().oneshot(request(Some("s"), Turn::default())));
        assert!(poll!(waiter.as_mut()).is_pending());
        assert_eq!(monitor.waiting(), 1);
    }
    assert_eq!(monitor.waiting(), 0, "the dropped waiter left");
    // Its place is free again: depth 1 admits a new waiter.
    let next = tokio::spawn(svc.clone().oneshot(request(Some("s"), Turn::default())));
    tokio::task::yield_now().await;
    assert_eq!(monitor.waiting(), 1);
    drop(running);
    within_an_hour(next).await.unwrap().unwrap();
    assert_eq!(provider.calls().len(), 2);
    assert!(monitor.snapshot().is_idle());
}

#[tokio::test(start_paused = true)]
async fn a_waiter_handed_the_slot_then_dropped_passes_it_on() {
    let provider = Provider::new();
    let layer = layer(4);
    let monitor = layer.monitor();
    let mut svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let running = svc
        .ready()
        .await
        .unwrap()
        .call(request(Some("s"), streamed(0)))
        .await
        .unwrap();
    let mut second = Box::pin(
        svc.ready()
            .await
            .unwrap()
            .call(request(Some("s"), Turn::default())),
    );
    let third = svc
        .ready()
        .await
        .unwrap()
        .call(request(Some("s"), Turn::default()));
    assert!(poll!(second.as_mut()).is_pending());

    drop(running); // The slot goes to `second`, which is not polled again...
    assert_eq!(monitor.waiting(), 1);
    drop(second); // ...and is dropped: the slot goes on to `third`.
    within_an_hour(third).await.unwrap();
    assert_eq!(provider.calls().len(), 2, "the dropped request never ran");
    assert!(monitor.snapshot().is_idle());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_running_call_frees_the_slot_at_once() {
    let provider = Provider::new();
    let layer = layer(4);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let t0 = Instant::now();
    let mut running = Box::pin(svc.clone().oneshot(request(Some("s"), streamed(1_000))));
    assert!(poll!(running.as_mut()).is_pending());
    let next = tokio::spawn(svc.clone().oneshot(request(Some("s"), Turn::default())));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(provider.calls().len(), 1);

    drop(running);
    within_an_hour(next).await.unwrap().unwrap();
    assert_eq!(provider.calls()[1].at - t0, Duration::from_millis(10));
    assert_eq!(provider.overlaps(), 0);
    assert!(monitor.snapshot().is_idle());
}

/// Runs `fut`, dropping it when it is woken for the `k`-th time. `None` if it was dropped.
async fn drop_after<F: Future>(fut: F, k: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut polls = 0;
    poll_fn(|cx| {
        if polls == k {
            return Poll::Ready(None);
        }
        polls += 1;
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Three streamed turns of one session; turn `target`'s call and body read are dropped after
/// `k` polls. Returns whether the target finished before being dropped.
async fn drop_one_turn(target: usize, k: usize) -> bool {
    let provider = Provider::new();
    let layer = towline_session::SessionLayer::builder()
        .max_wait(Duration::from_secs(10))
        .build()
        .unwrap();
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let mut finished = false;
    let mut turns = Vec::new();
    for i in 0..3 {
        let svc = svc.clone();
        let turn = async move {
            let res = svc.oneshot(request(Some("s"), streamed(5))).await.unwrap();
            drain(res.into_body()).await.unwrap()
        };
        turns.push((i, turn));
    }
    let mut futures = Vec::new();
    for (i, turn) in turns {
        let polls = if i == target { k } else { usize::MAX };
        futures.push(tokio::spawn(drop_after(turn, polls)));
    }
    for (i, f) in futures.into_iter().enumerate() {
        let out = within_an_hour(f).await.unwrap();
        if i == target {
            finished = out.is_some();
        } else {
            assert_eq!(out, Some(2), "turn {i} completed");
        }
    }
    assert_eq!(provider.overlaps(), 0);
    assert_eq!(provider.in_flight(), 0);
    assert!(monitor.snapshot().is_idle(), "target {target}, k {k}");
    finished
}

#[tokio::test(start_paused = true)]
async fn dropped_after_any_number_of_polls_nothing_is_left() {
    for target in 0..3 {
        let mut k = 0;
        while !drop_one_turn(target, k).await {
            k += 1;
            assert!(k < 100, "turn {target} never finishes");
        }
        // Waiting, calling and each body frame are separate await points.
        assert!(k >= 4, "turn {target} finished after only {k} polls");
    }
}

/// 100,000 sessions live at once, one to three turns each; a random share of the requests is
/// dropped at a random time: while waiting, while the provider works, or while the body
/// streams. Afterwards no session, waiter or running turn is left.
#[tokio::test(start_paused = true)]
async fn hundred_thousand_sessions_with_random_drops() {
    const SESSIONS: usize = 100_000;
    let mut rng = fastrand::Rng::with_seed(0x5e55_1015);
    let provider = Provider::new();
    let layer = layer(usize::MAX);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());

    let mut tasks = Vec::with_capacity(SESSIONS);
    let mut requests = 0;
    for s in 0..SESSIONS {
        let turns: Vec<(Turn, Option<u64>)> = (0..rng.usize(1..=3))
            .map(|_| {
                let turn = Turn {
                    head: Duration::from_millis(rng.u64(1..20)),
                    chunks: rng.u32(0..3),
                    chunk_every: Duration::from_millis(rng.u64(1..10)),
                    ..Turn::default()
                };
                let drop_at = rng.bool().then(|| rng.u64(1..60));
                (turn, drop_at)
            })
            .collect();
        requests += turns.len();
        let mut svc = svc.clone();
        let session = format!("s{s}");
        // One task per session; its turns are called in order, then run concurrently.
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut running = Vec::new();
            for (turn, drop_at) in turns {
                let probe = turn.probe.clone();
                let call = svc.call(request(Some(&session), turn));
                running.push(async move {
                    let whole_turn = async {
                        let res = call.await.unwrap();
                        drain(res.into_body()).await.unwrap();
                    };
                    let dropped = match drop_at {
                        Some(ms) => tokio::time::timeout(Duration::from_millis(ms), whole_turn)
                            .await
                            .is_err(),
                        None => {
                            whole_turn.await;
                            false
                        }
                    };
                    (dropped, probe)
                });
            }
            for (dropped, probe) in futures_util::future::join_all(running).await {
                outcomes.push(match (dropped, probe.called(), probe.responded()) {
                    (false, _, _) => Stage::Completed,
                    (true, false, _) => Stage::DroppedWaiting,
                    (true, true, false) => Stage::DroppedCalling,
                    (true, true, true) => Stage::DroppedInBody,
                });
            }
            outcomes
        }));
    }

    // Every first turn is at the provider for at least 1 ms: all sessions are live at once.
    tokio::time::sleep(Duration::from_micros(500)).await;
    let peak = monitor.snapshot();
    assert_eq!(peak.sessions, SESSIONS);
    assert_eq!(peak.waiting, requests - SESSIONS);

    let mut counts = [0usize; 4];
    for task in tasks {
        for stage in within_an_hour(task).await.unwrap() {
            counts[stage as usize] += 1;
        }
    }
    assert_eq!(counts.iter().sum::<usize>(), requests);
    for (stage, n) in counts.iter().enumerate() {
        assert!(
            *n > requests / 50,
            "stage {stage} was hit only {n} times: {counts:?}"
        );
    }
    assert!(monitor.snapshot().is_idle(), "{:?}", monitor.snapshot());
    assert_eq!(provider.in_flight(), 0);
    assert_eq!(provider.overlaps(), 0);
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    Completed = 0,
    DroppedWaiting = 1,
    DroppedCalling = 2,
    DroppedInBody = 3,
}

#[tokio::test(start_paused = true)]
async fn a_waiter_moved_to_another_task_is_woken_there() {
    let provider = Provider::new();
    let svc = ServiceBuilder::new()
        .layer(layer(4))
        .service(provider.clone());
    let running = svc
        .clone()
        .oneshot(request(Some("s"), streamed(0)))
        .await
        .unwrap();
    let mut waiter = Box::pin(svc.clone().oneshot(request(Some("s"), Turn::default())));
    // First polled here, with a waker that goes nowhere...
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    // ...then moved to a task of its own, which must be the one woken.
    let task = tokio::spawn(waiter);
    tokio::task::yield_now().await;
    drop(running);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the waiter's new task was woken")
        .unwrap()
        .unwrap();
}
