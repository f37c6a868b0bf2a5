//! Queue depth, maximum wait, errors, events and configuration.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::poll;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::event::Event;
use towline_core::{Error, ErrorKind, SessionQueueReason};
use towline_session::SessionLayer;

use crate::support::{Provider, Turn, layer, recorder, request, within_an_hour};

fn held() -> Turn {
    Turn {
        chunks: 1,
        chunk_every: Duration::from_secs(3600),
        ..Turn::default()
    }
}

#[tokio::test(start_paused = true)]
async fn over_the_depth_is_refused_at_once() {
    let provider = Provider::new();
    let layer = layer(2);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let _running = svc
        .clone()
        .oneshot(request(Some("s"), held()))
        .await
        .unwrap();
    let mut w1 = pin!(svc.clone().oneshot(request(Some("s"), Turn::default())));
    let mut w2 = pin!(svc.clone().oneshot(request(Some("s"), Turn::default())));
    assert!(poll!(w1.as_mut()).is_pending());
    assert!(poll!(w2.as_mut()).is_pending());
    assert_eq!(monitor.waiting(), 2);

    let (observer, events) = recorder();
    let mut req = request(Some("s"), Turn::default());
    req.extensions_mut().insert(observer);
    let mut third = pin!(svc.clone().oneshot(req));
    let Poll::Ready(Err(err)) = poll!(third.as_mut()) else {
        panic!("the third waiter is refused on its first poll");
    };
    assert_eq!(err.kind(), ErrorKind::SessionQueueFull);
    assert!(matches!(
        err,
        Error::SessionQueueFull(f) if f.reason == SessionQueueReason::Full { limit: 2 }
    ));
    assert_eq!(
        *events.lock().unwrap(),
        [Event::SessionRejected {
            reason: SessionQueueReason::Full { limit: 2 }
        }]
    );
    assert_eq!(monitor.waiting(), 2, "the refused request took no place");

    // Another session is not affected by the full one.
    svc.clone()
        .oneshot(request(Some("other"), Turn::default()))
        .await
        .unwrap();
    assert_eq!(provider.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_waiting_too_long_fails_and_leaves_the_line() {
    let provider = Provider::new();
    let layer = SessionLayer::builder()
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let running = svc
        .clone()
        .oneshot(request(Some("s"), held()))
        .await
        .unwrap();

    let (observer, events) = recorder();
    let mut req = request(Some("s"), Turn::default());
    req.extensions_mut().insert(observer);
    let started = tokio::time::Instant::now();
    let err = svc.clone().oneshot(req).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let wait_too_long = SessionQueueReason::WaitTooLong {
        waited: Duration::from_secs(1),
    };
    assert!(matches!(err, Error::SessionQueueFull(f) if f.reason == wait_too_long));
    assert_eq!(
        *events.lock().unwrap(),
        [Event::SessionRejected {
            reason: wait_too_long
        }]
    );
    assert_eq!(monitor.snapshot().waiting, 0);
    assert_eq!(provider.calls().len(), 1, "the expired request never ran");

    drop(running);
    assert!(monitor.snapshot().is_idle());
    within_an_hour(svc.oneshot(request(Some("s"), Turn::default())))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_turn_handed_over_before_the_deadline_is_noticed_is_taken() {
    let provider = Provider::new();
    let layer = SessionLayer::builder()
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let running = svc
        .clone()
        .oneshot(request(Some("s"), held()))
        .await
        .unwrap();
    let mut waiter = pin!(svc.clone().oneshot(request(Some("s"), Turn::default())));
    assert!(poll!(waiter.as_mut()).is_pending());

    // The deadline passes and the slot is handed over before the waiter is polled again.
    tokio::time::advance(Duration::from_secs(2)).await;
    drop(running);
    let res = within_an_hour(waiter)
        .await
        .expect("the turn came; it is taken");
    assert!(!res.body().holds_slot());
    assert_eq!(provider.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_reported() {
    let provider = Provider::new();
    let svc = ServiceBuilder::new()
        .layer(layer(4))
        .service(provider.clone());
    let first = Turn {
        head: Duration::from_millis(250),
        ..Turn::default()
    };
    let (observer, events) = recorder();
    let mut second = request(Some("s"), Turn::default());
    second.extensions_mut().insert(observer.clone());
    let mut first = request(Some("s"), first);
    first.extensions_mut().insert(observer);
    let (a, b) = within_an_hour(async {
        tokio::join!(svc.clone().oneshot(first), svc.clone().oneshot(second))
    })
    .await;
    a.unwrap();
    b.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [Event::SessionWaited {
            waited: Duration::from_millis(250)
        }],
        "only the request that waited reports, with its wait"
    );
}

#[tokio::test(start_paused = true)]
async fn an_inner_error_releases_the_slot() {
    let provider = Provider::new();
    let layer = layer(4);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let failing = Turn {
        head: Duration::from_millis(10),
        fail: true,
        ..Turn::default()
    };
    let (a, b) = within_an_hour(async {
        tokio::join!(
            svc.clone().oneshot(request(Some("s"), failing)),
            svc.clone().oneshot(request(Some("s"), Turn::default())),
        )
    })
    .await;
    assert_eq!(a.unwrap_err().kind(), ErrorKind::Transport);
    b.unwrap();
    assert_eq!(provider.calls().len(), 2);
    assert!(monitor.snapshot().is_idle());
}

/// A service that fails to become ready once `broken` is set.
#[derive(Clone)]
struct Breakable {
    inner: Provider,
    broken: Arc<AtomicBool>,
}

impl Service<http::Request<()>> for Breakable {
    type Response = <Provider as Service<http::Request<()>>>::Response;
    type Error = Error;
    type Future = <Provider as Service<http::Request<()>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.broken.load(Ordering::SeqCst) {
            return Poll::Ready(Err(Error::transport(std::io::Error::other("pool closed"))));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<()>) -> Self::Future {
        self.inner.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_after_the_turn_came_releases_the_slot() {
    let provider = Provider::new();
    let broken = Arc::new(AtomicBool::new(false));
    let layer = layer(4);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(Breakable {
        inner: provider.clone(),
        broken: broken.clone(),
    });
    let running = svc
        .clone()
        .oneshot(request(Some("s"), held()))
        .await
        .unwrap();
    let mut waiter = svc.clone();
    let mut waiter = pin!(waiter.call(request(Some("s"), Turn::default())));
    assert!(poll!(waiter.as_mut()).is_pending());
    broken.store(true, Ordering::SeqCst);
    drop(running);
    let err = within_an_hour(waiter).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert!(monitor.snapshot().is_idle());
}

#[test]
fn nonsense_settings_are_refused_naming_the_setting() {
    let zero_wait = SessionLayer::builder()
        .max_wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(zero_wait.setting(), "max_wait");
    let header = SessionLayer::builder()
        .session_header("bad header\n")
        .build()
        .unwrap_err();
    assert_eq!(header.setting(), "session_header");
    assert!(header.to_string().contains("session_header"));

    let ok = SessionLayer::builder()
        .max_queue_depth(0)
        .max_wait(Duration::from_millis(1))
        .build()
        .unwrap();
    assert_eq!(ok.max_queue_depth(), 0);
    assert_eq!(ok.max_wait(), Some(Duration::from_millis(1)));
    let defaults = SessionLayer::new();
    assert_eq!(
        defaults.max_queue_depth(),
        SessionLayer::DEFAULT_MAX_QUEUE_DEPTH
    );
    assert_eq!(defaults.max_wait(), Some(SessionLayer::DEFAULT_MAX_WAIT));
}

#[tokio::test(start_paused = true)]
async fn a_custom_header_keys_sessions() {
    let provider = Provider::new();
    let layer = SessionLayer::builder()
        .session_header("x-conversation-id")
        .max_queue_depth(0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let conv = || {
        let mut req = request(None, held());
        req.headers_mut()
            .insert("x-conversation-id", "c1".parse().unwrap());
        req
    };
    let _running = svc.clone().oneshot(conv()).await.unwrap();
    let err = svc.clone().oneshot(conv()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SessionQueueFull);
    // `x-session-id` is not the key any more: such a request is not serialized.
    svc.oneshot(request(Some("c1"), Turn::default()))
        .await
        .unwrap();
}
