//! The per-attempt timeout, alone and under the retry layer.

use std::time::Duration;

use std::future::Future;
use tokio::time::Instant;

use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use towline_core::{Error, ErrorKind};
use towline_retry::{Attempts, TimeoutLayer};

use crate::support::*;
use crate::{SEC, builder};

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_fails_with_a_timeout_error_at_the_timeout() {
    let slow = service_fn(|()| async {
        tokio::time::sleep(10 * SEC).await;
        Ok::<_, Error>("late")
    });
    let started = Instant::now();
    let err = ServiceBuilder::new()
        .layer(TimeoutLayer::new(3 * SEC).unwrap())
        .service(slow)
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), 3 * SEC);
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(matches!(err, Error::Timeout(d) if d == 3 * SEC));
    assert!(err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_fast_attempt_and_its_errors_pass_through() {
    let fast = service_fn(|ok: bool| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if ok {
            Ok("answer")
        } else {
            Err(api(ErrorKind::NotFound, 404))
        }
    });
    let timeout = ServiceBuilder::new()
        .layer(TimeoutLayer::new(SEC).unwrap())
        .service(fast);
    assert_eq!(timeout.clone().oneshot(true).await.unwrap(), "answer");
    let err = timeout.oneshot(false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_its_own_timeout_and_is_retried() {
    // Attempt 1 hangs and times out at 2 s; attempt 2, 500 ms later, answers.
    let provider = Provider::new([Step::Hang]);
    let started = Instant::now();
    let response = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .layer(TimeoutLayer::new(2 * SEC).unwrap())
        .service(provider.service())
        .oneshot(post("{}"))
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 2);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2500) && elapsed < Duration::from_millis(2510));
}

#[test]
fn a_zero_timeout_is_rejected() {
    let err = TimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.setting(), "timeout");
}

#[test]
fn an_attempt_that_answers_at_once_makes_no_timer() {
    // No runtime here: making a tokio timer would panic, so the timer must not be made.
    let mut timeout = TimeoutLayer::new(SEC).unwrap().layer(service_fn(|()| {
        std::future::ready(Ok::<_, Error>("at once"))
    }));
    let future = tower::Service::call(&mut timeout, ());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(answer) => assert_eq!(answer.unwrap(), "at once"),
        std::task::Poll::Pending => panic!("the answer was ready"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_timeout_counts_from_the_call_not_from_the_first_poll() {
    let hangs = service_fn(|()| std::future::pending::<Result<&str, Error>>());
    let mut timeout = TimeoutLayer::new(2 * SEC).unwrap().layer(hangs);
    let future = tower::Service::call(&mut timeout, ());
    tokio::time::advance(3 * SEC).await;
    let started = Instant::now();
    let err = future.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "already late at the first poll"
    );
}
