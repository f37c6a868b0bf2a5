//! The slot is held for the whole streamed response: the next turn starts only after the
//! previous body's last frame, its error, or its drop.

use std::time::Duration;

use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

use crate::support::{End, Provider, Turn, drain, layer, request, within_an_hour};

fn streamed(end: End) -> Turn {
    Turn {
        chunks: 3,
        chunk_every: Duration::from_millis(100),
        end,
        ..Turn::default()
    }
}

/// Two turns of one session, the first streamed and ending as `end` says; returns when the
/// provider received the second turn, relative to the first one's call, and the outcome of
/// reading the first body.
async fn second_turn_start(end: End) -> (Duration, usize) {
    let provider = Provider::new();
    let layer = layer(4);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let t0 = Instant::now();

    let first = svc
        .clone()
        .oneshot(request(Some("s"), streamed(end)))
        .await
        .unwrap();
    let second = tokio::spawn(svc.clone().oneshot(request(Some("s"), Turn::default())));

    let mut body = first.into_body();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) if f.is_data() => frames += 1,
            _ => {}
        }
        // The provider has not seen the second turn while the stream still runs.
        if body.holds_slot() {
            assert_eq!(provider.calls().len(), 1, "second turn started mid-stream");
        }
        tokio::task::yield_now().await;
    }
    assert!(!body.holds_slot());
    let res = within_an_hour(second).await.unwrap().unwrap();
    drain(res.into_body()).await.unwrap();
    assert_eq!(provider.overlaps(), 0);
    assert!(monitor.snapshot().is_idle());
    (provider.calls()[1].at - t0, frames)
}

#[tokio::test(start_paused = true)]
async fn next_turn_starts_after_the_last_chunk() {
    let (at, frames) = second_turn_start(End::Eager).await;
    assert_eq!(frames, 3);
    assert_eq!(at, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_body_that_only_ends_with_none_holds_until_none() {
    let (at, frames) = second_turn_start(End::Lazy).await;
    assert_eq!(frames, 3);
    assert_eq!(at, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn trailers_end_the_turn() {
    let (at, _) = second_turn_start(End::Trailers).await;
    assert_eq!(at, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_body_error_ends_the_turn() {
    let (at, frames) = second_turn_start(End::Error).await;
    assert_eq!(frames, 3);
    assert_eq!(at, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_released_exactly_with_the_last_frame() {
    let provider = Provider::new();
    let svc = ServiceBuilder::new()
        .layer(layer(4))
        .service(provider.clone());
    let mut eager = svc
        .clone()
        .oneshot(request(Some("e"), streamed(End::Eager)))
        .await
        .unwrap()
        .into_body();
    let mut lazy = svc
        .clone()
        .oneshot(request(Some("l"), streamed(End::Lazy)))
        .await
        .unwrap()
        .into_body();
    for _ in 0..3 {
        assert!(eager.holds_slot() && lazy.holds_slot());
        eager.frame().await.unwrap().unwrap();
        lazy.frame().await.unwrap().unwrap();
    }
    assert!(
        !eager.holds_slot(),
        "is_end_stream after the last data frame ends the turn"
    );
    assert!(lazy.holds_slot(), "not over until the body says so");
    assert!(lazy.frame().await.is_none());
    assert!(!lazy.holds_slot());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_body_mid_stream_lets_the_next_turn_in() {
    let provider = Provider::new();
    let layer = layer(4);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let t0 = Instant::now();
    let mut body = svc
        .clone()
        .oneshot(request(Some("s"), streamed(End::Eager)))
        .await
        .unwrap()
        .into_body();
    let second = tokio::spawn(svc.clone().oneshot(request(Some("s"), Turn::default())));
    body.frame().await.unwrap().unwrap();
    tokio::task::yield_now().await;
    assert_eq!(provider.calls().len(), 1);

    drop(body);
    within_an_hour(second).await.unwrap().unwrap();
    assert_eq!(provider.calls()[1].at - t0, Duration::from_millis(100));
    assert_eq!(provider.overlaps(), 0);
    assert!(monitor.snapshot().is_idle());
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_releases_the_slot_with_the_response() {
    let provider = Provider::new();
    let layer = layer(4);
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new().layer(layer).service(provider.clone());
    let res = svc
        .oneshot(request(Some("s"), Turn::default()))
        .await
        .unwrap();
    assert!(!res.body().holds_slot());
    assert_eq!(
        monitor.live_sessions(),
        0,
        "released before the body is even read"
    );
    drop(res);
}
