//! FIFO per session, never two turns of one session at once, sessions independent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::support::{End, Provider, Turn, drain, layer, request, within_an_hour};

#[derive(Debug, Clone)]
struct Arrival {
    session: u8,
    at_ms: u64,
    head_ms: u64,
    chunks: u32,
    chunk_ms: u64,
    end: End,
    fail: bool,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        0u8..4,
        0u64..60,
        0u64..20,
        0u32..4,
        0u64..10,
        prop_oneof![
            Just(End::Eager),
            Just(End::Lazy),
            Just(End::Trailers),
            Just(End::Error)
        ],
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(session, at_ms, head_ms, chunks, chunk_ms, end, fail)| Arrival {
                session,
                at_ms,
                head_ms,
                chunks,
                chunk_ms,
                end,
                fail,
            },
        )
}

/// Sends every arrival at its time through one layer; returns the provider's records.
async fn run(arrivals: Vec<Arrival>) -> Provider {
    let provider = Provider::new();
    let layer = layer(usize::MAX);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let next_seq = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = arrivals
        .into_iter()
        .map(|a| {
            let mut svc = svc.clone();
            let next_seq = next_seq.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(a.at_ms)).await;
                let ready = svc.ready().await.unwrap();
                // Numbered right where the layer sees it arrive: no await in between.
                let turn = Turn {
                    seq: next_seq.fetch_add(1, Ordering::SeqCst),
                    head: Duration::from_millis(a.head_ms),
                    chunks: a.chunks,
                    chunk_every: Duration::from_millis(a.chunk_ms),
                    end: a.end,
                    fail: a.fail,
                    ..Turn::default()
                };
                let session = format!("s{}", a.session);
                match ready.call(request(Some(&session), turn)).await {
                    Ok(res) => {
                        let _ = drain(res.into_body()).await;
                    }
                    Err(e) => assert!(a.fail, "unexpected error {e}"),
                }
            })
        })
        .collect();
    within_an_hour(async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    assert!(monitor.snapshot().is_idle(), "{:?}", monitor.snapshot());
    provider
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fifo_per_session_under_random_arrival(arrivals in proptest::collection::vec(arrival(), 1..40)) {
        let n = arrivals.len();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let provider = rt.block_on(run(arrivals));
        prop_assert_eq!(provider.overlaps(), 0, "two turns of one session ran at once");
        prop_assert_eq!(provider.calls().len(), n, "every request reached the provider once");
        for s in 0..4 {
            let seqs = provider.seqs_of(&format!("s{s}"));
            prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "s{} served out of order: {:?}", s, seqs);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn sessions_are_independent() {
    let provider = Provider::new();
    let layer = layer(8);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let streaming = Turn {
        chunks: 3,
        chunk_every: Duration::from_secs(60),
        ..Turn::default()
    };

    // Session A: a turn whose stream is left unread, and a second turn behind it.
    let a1 = svc
        .clone()
        .oneshot(request(Some("a"), streaming.clone()))
        .await
        .unwrap();
    let a2 = tokio::spawn(svc.clone().oneshot(request(Some("a"), Turn::default())));
    tokio::task::yield_now().await;
    assert_eq!(monitor.waiting(), 1);

    // Session B runs three turns meanwhile, without waiting for A.
    for _ in 0..3 {
        let res = svc
            .clone()
            .oneshot(request(Some("b"), Turn::default()))
            .await
            .unwrap();
        assert_eq!(drain(res.into_body()).await.unwrap(), 0);
    }
    assert_eq!(provider.seqs_of("b").len(), 3);
    assert_eq!(
        provider.seqs_of("a").len(),
        1,
        "A's second turn still waits"
    );
    assert!(!a2.is_finished());

    drop(a1);
    within_an_hour(a2).await.unwrap().unwrap();
    assert_eq!(provider.seqs_of("a").len(), 2);
    assert_eq!(provider.overlaps(), 0);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_pass_straight_through() {
    let provider = Provider::new();
    let layer = layer(0);
    let monitor = layer.monitor();
    let mut svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let slow = Turn {
        head: Duration::from_secs(1),
        ..Turn::default()
    };
    let first = svc.ready().await.unwrap().call(request(None, slow.clone()));
    let second = svc.ready().await.unwrap().call(request(None, slow));
    let (first, second) = tokio::join!(first, second);
    assert!(!first.unwrap().body().holds_slot());
    assert!(!second.unwrap().body().holds_slot());
    assert_eq!(provider.max_in_flight(), 2, "both ran at once");
    assert_eq!(
        monitor.live_sessions(),
        0,
        "no state for requests without a key"
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_key_extractor_serializes_by_its_key() {
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct Conversation(u32);

    let provider = Provider::new();
    let layer = towline_session::SessionLayer::builder()
        .key_extractor(|req: &http::Request<()>| req.extensions().get::<Conversation>().cloned())
        .build()
        .unwrap();
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let slow = Turn {
        head: Duration::from_secs(1),
        ..Turn::default()
    };
    let with = |c: u32| {
        let mut req = request(None, slow.clone());
        req.extensions_mut().insert(Conversation(c));
        req
    };
    let started = tokio::time::Instant::now();
    let (a, b, c) = within_an_hour(async {
        tokio::join!(
            svc.clone().oneshot(with(1)),
            svc.clone().oneshot(with(1)),
            svc.clone().oneshot(with(2)),
        )
    })
    .await;
    let _ = (a.unwrap(), b.unwrap(), c.unwrap());
    let at: Vec<_> = provider.calls().iter().map(|c| c.at - started).collect();
    // Conversation 1's second turn ran after its first; conversation 2 ran alongside.
    assert_eq!(
        at,
        [Duration::ZERO, Duration::ZERO, Duration::from_secs(1)],
        "{at:?}"
    );
    assert_eq!(provider.max_in_flight(), 2);
    assert!(monitor.snapshot().is_idle());
}

/// Real threads, no paused time: many tasks on two workers hammer eight sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlap_across_threads() {
    let provider = Provider::new();
    let layer = layer(usize::MAX);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let session = format!("s{}", i % 8);
                let turn = Turn {
                    chunks: 2,
                    end: if i % 2 == 0 { End::Eager } else { End::Lazy },
                    ..Turn::default()
                };
                let res = svc.oneshot(request(Some(&session), turn)).await.unwrap();
                tokio::task::yield_now().await;
                drain(res.into_body()).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        // Real time here: a deadlock fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("no deadlock")
            .unwrap();
    }
    assert_eq!(provider.calls().len(), 400);
    assert_eq!(provider.overlaps(), 0);
    assert!(monitor.snapshot().is_idle());
}

#[test]
fn futures_and_bodies_are_send() {
    fn send<T: Send>() {}
    type Svc = towline_session::Session<Provider>;
    send::<<Svc as Service<http::Request<()>>>::Future>();
    send::<towline_session::SessionBody<crate::support::TurnBody>>();
    send::<towline_session::SessionMonitor>();
}
