//! Starting, serving many connections, and shutting down.

mod support;

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use towline_mock::{Fault, MockProvider, Script, StartError};

use support::{Chat, chat, client, send};

#[tokio::test]
async fn it_starts_in_a_few_milliseconds_on_loopback() {
    let started = Instant::now();
    let server = MockProvider::builder().start().await.unwrap();
    let took = started.elapsed();
    // A few milliseconds in practice; the bound leaves room for a loaded machine.
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    assert_eq!(chat(&client(), &server, &Chat::key("k")).await.status, 200);
}

#[tokio::test]
async fn dropping_the_server_refuses_new_connections_at_once() {
    let server = MockProvider::builder().start().await.unwrap();
    let addr = server.addr();
    drop(TcpStream::connect(addr).await.expect("listening"));
    drop(server);
    let refused = TcpStream::connect(addr).await;
    assert_eq!(
        refused.map(drop).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[tokio::test]
async fn shutdown_ends_open_exchanges_and_waits_for_them() {
    let server = MockProvider::builder()
        .default_script(Script::default().fault(Fault::stall_headers()))
        .start()
        .await
        .unwrap();
    let addr = server.addr();
    let client = client();
    let stalled = {
        let (client, req) = (client.clone(), Chat::key("k").request(&server));
        tokio::spawn(async move { send(&client, req).await })
    };
    while server.arrivals() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown does not wait for a stalled exchange");
    let outcome = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the client sees the connection close")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_are_served_concurrently() {
    let server = MockProvider::builder()
        .default_script(Script::default().latency(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let client = client();
    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..200 {
        let key = format!("sk-{}", i % 10);
        let (client, req) = (client.clone(), Chat::key(&key).request(&server));
        requests.spawn(async move { send(&client, req).await.map(|r| r.status) });
    }
    while let Some(result) = requests.join_next().await {
        assert_eq!(result.unwrap().unwrap(), 200);
    }
    // One after the other they would take 40 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let journal = server.journal();
    assert_eq!(journal.total(), 200);
    assert_eq!(journal.attempts("sk-3"), 20);
}

#[tokio::test]
async fn a_given_port_is_used_and_a_taken_one_is_an_error() {
    let first = MockProvider::builder().start().await.unwrap();
    let taken = first.addr().port();
    let err = MockProvider::builder()
        .port(taken)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, StartError::Bind { port, .. } if port == taken),
        "{err}"
    );
    assert!(err.to_string().contains(&taken.to_string()));
    drop(first);
    let again = MockProvider::builder().port(taken).start().await.unwrap();
    assert_eq!(again.addr().port(), taken);
}

#[tokio::test]
async fn an_invalid_scenario_does_not_start() {
    let err = MockProvider::builder()
        .default_script(Script::default().fault(Fault::server_error().probability(1.5)))
        .start()
        .await
        .unwrap_err();
    match err {
        StartError::Invalid(script) => assert_eq!(script.field(), "default.faults[0].p"),
        other => panic!("{other}"),
    }
}

#[test]
fn the_public_types_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<towline_mock::MockServer>();
    send_sync::<towline_mock::MockProvider>();
    send_sync::<towline_mock::Scenario>();
    send_sync::<towline_mock::Journal>();
    send_sync::<towline_mock::ScriptError>();
    send_sync::<StartError>();
}
