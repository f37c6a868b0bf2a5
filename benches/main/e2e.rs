//! End to end over loopback: a hyper-util client calling the towline mock provider (a real
//! HTTP/1.1 server in this process), bare and under the full default stack
//! (`towline::Stack::new()`), at concurrency 1 and 32, on a 2-worker runtime.
//!
//! Each call is a chat completion with an API key and a session id (one session per
//! concurrent caller, as conversations are), its JSON answer read to the end. criterion times
//! the calls (time per call at that concurrency = 1 / calls per second). Then the two clients
//! run interleaved rounds (bare, stack, bare, stack, ...) so that the machine's noise falls on
//! both alike, and report calls/s, p50 and p99 per call.

use std::fmt::Debug;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use towline::mock::{MockProvider, MockServer};
use towline::{ReplayBody, Stack};

use crate::support::{self, Compare, report};

const ROUNDS: usize = 6;
const CALLS_PER_ROUND: usize = 1_500;

pub(crate) fn bench_all(c: &mut Criterion) {
    for concurrency in [1, 32] {
        bench_concurrency(c, concurrency);
    }
}

fn group_name(concurrency: usize) -> &'static str {
    if concurrency == 1 {
        "e2e_c1"
    } else {
        "e2e_c32"
    }
}

fn bench_concurrency(c: &mut Criterion, concurrency: usize) {
    let name = group_name(concurrency);
    if !support::wants(name) {
        return;
    }
    let runtime = support::runtime();
    let server = runtime.block_on(async {
        MockProvider::builder()
            .journal_limit(0)
            .start()
            .await
            .expect("the mock provider starts")
    });
    let url = server.url("/chat/completions");
    let bare = hyper_client::<Full<Bytes>>(&runtime);
    let stack = Stack::new().service(hyper_client::<ReplayBody<Full<Bytes>>>(&runtime));
    runtime.block_on(async {
        run(&bare, &url, concurrency, concurrency as u64 * 10).await;
        run(&stack, &url, concurrency, concurrency as u64 * 10).await;
    });

    let mut group = Compare::new(c, name);
    group.sample_size(20);
    group.case_custom("towline_stack", |iters| {
        runtime.block_on(run(&stack, &url, concurrency, iters))
    });
    group.case_custom("bare_client", |iters| {
        runtime.block_on(run(&bare, &url, concurrency, iters))
    });
    drop(group);
    interleaved(&runtime, name, &server, &bare, &stack, concurrency);
}

fn hyper_client<B>(runtime: &Runtime) -> Client<HttpConnector, B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    let _context = runtime.enter();
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// `iters` calls from `concurrency` callers; the wall time of the whole.
async fn run<S, B>(service: &S, url: &str, concurrency: usize, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Debug + Send,
    S::Future: Send,
    B: Body<Data = Bytes> + Send,
    B::Error: Debug + Send,
{
    let start = Instant::now();
    let per_caller = iters.div_ceil(concurrency as u64);
    let callers: Vec<_> = (0..concurrency)
        .map(|caller| {
            let (service, url) = (service.clone(), url.to_owned());
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    call(&service, &url, caller).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("a caller finished");
    }
    start.elapsed()
}

async fn call<S, B>(service: &S, url: &str, caller: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let request = Request::post(url)
        .header("authorization", support::bearer())
        .header("content-type", "application/json")
        .header("x-session-id", format!("conversation-{caller}"))
        .body(Full::new(Bytes::from_static(support::CHAT)))
        .expect("a valid request");
    let response = service
        .clone()
        .oneshot(request)
        .await
        .expect("the mock answers");
    assert_eq!(response.status(), 200);
    let body = support::read_all(response.into_body()).await;
    assert!(!body.is_empty());
}

/// Per-call latencies (nanoseconds) and the wall time of `calls` calls at `concurrency`.
async fn timed<S, B>(
    service: &S,
    url: &str,
    concurrency: usize,
    calls: usize,
) -> (Vec<u64>, Duration)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Debug + Send,
    S::Future: Send,
    B: Body<Data = Bytes> + Send,
    B::Error: Debug + Send,
{
    let start = Instant::now();
    let per_caller = calls.div_ceil(concurrency);
    let callers: Vec<_> = (0..concurrency)
        .map(|caller| {
            let (service, url) = (service.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(per_caller);
                for _ in 0..per_caller {
                    let sent = Instant::now();
                    call(&service, &url, caller).await;
                    took.push(sent.elapsed().as_nanos() as u64);
                }
                took
            })
        })
        .collect();
    let mut took = Vec::with_capacity(calls);
    for caller in callers {
        took.extend(caller.await.expect("a caller finished"));
    }
    (took, start.elapsed())
}

fn interleaved<S1, S2, B1, B2>(
    runtime: &Runtime,
    name: &str,
    server: &MockServer,
    bare: &S1,
    stack: &S2,
    concurrency: usize,
) where
    S1: Service<Request<Full<Bytes>>, Response = Response<B1>> + Clone + Send + Sync + 'static,
    S1::Error: Debug + Send,
    S1::Future: Send,
    B1: Body<Data = Bytes> + Send,
    B1::Error: Debug + Send,
    S2: Service<Request<Full<Bytes>>, Response = Response<B2>> + Clone + Send + Sync + 'static,
    S2::Error: Debug + Send,
    S2::Future: Send,
    B2: Body<Data = Bytes> + Send,
    B2::Error: Debug + Send,
{
    let url = server.url("/chat/completions");
    let (mut bare_took, mut stack_took) = (Vec::new(), Vec::new());
    let (mut bare_wall, mut stack_wall) = (Duration::ZERO, Duration::ZERO);
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            let (took, wall) = timed(bare, &url, concurrency, CALLS_PER_ROUND).await;
            bare_took.extend(took);
            bare_wall += wall;
            let (took, wall) = timed(stack, &url, concurrency, CALLS_PER_ROUND).await;
            stack_took.extend(took);
            stack_wall += wall;
        }
    });
    for (who, took, wall) in [
        ("bare_client", &mut bare_took, bare_wall),
        ("towline_stack", &mut stack_took, stack_wall),
    ] {
        took.sort_unstable();
        let calls_per_s = took.len() as f64 / wall.as_secs_f64();
        report::figure(
            &format!("{name}_interleaved/{who}/ns_per_call"),
            1e9 / calls_per_s,
            "ns",
        );
        report::figure(
            &format!("{name}_interleaved/{who}/calls_per_s"),
            calls_per_s,
            "calls/s",
        );
        report::figure(
            &format!("{name}_interleaved/{who}/p50"),
            support::percentile(took, 50.0) as f64,
            "ns",
        );
        report::figure(
            &format!("{name}_interleaved/{who}/p99"),
            support::percentile(took, 99.0) as f64,
            "ns",
        );
    }
}
