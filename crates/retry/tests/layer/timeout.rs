//! The per-attempt timeout, alone and under the retry layer.

use std::time::Duration;

use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};
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
