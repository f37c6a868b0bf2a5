//! Retry, success path: what a call pays for being retryable when it succeeds the first time.
//!
//! The peer is `tower::retry::Retry` with a `TpsBudget` (the same 20 % ratio, 10 retries/s
//! floor and 10 s window as towline's default budget) and the policy tower's docs suggest:
//! deposit on success, withdraw and back off on a retryable error, clone the request up front
//! (`http::Request<Full<Bytes>>` is `Clone`). Both wrap the same `service_fn` client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, ServiceExt};
use towline::retry::RetryLayer;
use towline::{Error, ReplayBody};

use crate::support::{self, Compare};

/// The policy a tower user writes: retry retryable errors while the budget allows.
#[derive(Clone)]
struct BudgetPolicy {
    budget: Arc<TpsBudget>,
}

impl<Res> Policy<Request<Full<Bytes>>, Res, Error> for BudgetPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Res, Error>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(e) if e.is_retryable() && self.budget.withdraw() => {
                Some(tokio::time::sleep(Duration::from_millis(100)))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(req.clone())
    }
}

pub(crate) fn bench_all(c: &mut Criterion) {
    if !support::wants("retry_success") {
        return;
    }
    let mut ours = RetryLayer::default()
        .layer(support::client::<ReplayBody<Full<Bytes>>>())
        .map_response(|response: Response<Full<Bytes>>| response);
    let policy = BudgetPolicy {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
    };
    let mut theirs = tower::retry::RetryLayer::new(policy).layer(support::client());
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check("tower", support::call(&mut theirs, support::request()));

    let mut group = Compare::new(c, "retry_success");
    group.case("towline", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("tower_retry_tps_budget", support::request, |req| {
        support::call(&mut theirs, req)
    });
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}
