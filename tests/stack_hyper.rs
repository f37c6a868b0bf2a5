//! The default stack (`towline::Stack`) over the hyper-util legacy client, against the mock
//! provider in every seed dialect. The scenarios live in `stack_suite`.
#![cfg(feature = "stack")]

mod stack_suite;

use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stack_suite::Service;
use towline::Stack;

/// Puts a stack over one hyper-util client (plain HTTP: the mock listens on loopback); the
/// connection pool is shared, every stack is new.
fn over_hyper() -> impl Fn(Stack) -> Service {
    let client = Client::builder(TokioExecutor::new()).build_http();
    move |stack| stack_suite::boxed(stack.service(client.clone()))
}

#[tokio::test]
async fn rate_limit_with_a_hint_is_retried_after_the_hint() {
    stack_suite::rate_limit_with_a_hint_is_retried_after_the_hint(over_hyper()).await;
}

#[tokio::test]
async fn quota_is_sent_once_and_returned_typed() {
    stack_suite::quota_is_sent_once_and_returned_typed(over_hyper()).await;
}

#[tokio::test]
async fn auth_failure_is_returned_typed() {
    stack_suite::auth_failure_is_returned_typed(over_hyper()).await;
}

#[tokio::test]
async fn stream_is_read_to_done() {
    stack_suite::stream_is_read_to_done(over_hyper()).await;
}

#[tokio::test]
async fn broken_stream_is_interrupted_not_retried() {
    stack_suite::broken_stream_is_interrupted_not_retried(over_hyper()).await;
}

#[tokio::test]
async fn session_turns_are_serialized() {
    stack_suite::session_turns_are_serialized(over_hyper()).await;
}

#[tokio::test]
async fn kimi_free_api_http_200_needs_inspect_ok_json() {
    stack_suite::kimi_free_api_http_200_needs_inspect_ok_json(over_hyper()).await;
}
