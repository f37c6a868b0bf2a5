//! Keys: independence, sharing between clones, eviction, requests without a key, and how keys
//! are named.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::Layer;
use towline_breaker::Unkeyed;
use towline_core::{ApiKey, CircuitState, ErrorKind, FakeClock};

use crate::support::*;

fn failing_for(host: &'static str) -> Scripted {
    Scripted::new(move |r| {
        if r.uri().host() == Some(host) {
            Err(api(ErrorKind::Server, 500))
        } else {
            ok()
        }
    })
}

#[test]
fn each_endpoint_has_its_own_circuit() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let provider = failing_for("down.example");
    let mut svc = layer.layer(provider.clone());
    for _ in 0..3 {
        let _ = run(&mut svc, req("down.example"));
    }
    for _ in 0..100 {
        run(&mut svc, req("up.example")).unwrap();
        let err = run(&mut svc, req("down.example")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    }
    assert_eq!(provider.calls(), 103);
    assert_eq!(handle.state("down.example"), Some(CircuitState::Open));
    assert_eq!(handle.state("up.example"), Some(CircuitState::Closed));
    // Ports are part of the endpoint.
    run(&mut svc, req("down.example:8443")).unwrap_err();
    assert_eq!(
        handle.state("down.example:8443"),
        Some(CircuitState::Closed)
    );
    assert_eq!(handle.len(), 3);
}

#[test]
fn clones_and_services_of_one_layer_share_their_circuits() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let provider = failing_for("api.example.com");
    let mut first = layer.layer(provider.clone());
    let mut clone = first.clone();
    let mut sibling = layer.clone().layer(provider.clone());
    let _ = run(&mut first, req("api.example.com"));
    let _ = run(&mut clone, req("api.example.com"));
    let _ = run(&mut sibling, req("api.example.com"));
    // Three failures, one through each: one shared count, so all three now reject.
    for svc in [&mut first, &mut clone, &mut sibling] {
        let err = run(svc, req("api.example.com")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    }
    assert_eq!(provider.calls(), 3);
    assert_eq!(first.handle().len(), 1);

    // Another layer has circuits of its own.
    let mut other = builder(&clock).build().unwrap().layer(provider.clone());
    assert_eq!(
        run(&mut other, req("api.example.com")).unwrap_err().kind(),
        ErrorKind::Server
    );
}

#[test]
fn idle_keys_are_evicted_when_a_new_key_arrives() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap(); // idle after 60 s
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|_| ok()));
    for host in ["a.example", "b.example", "c.example"] {
        run(&mut svc, req(host)).unwrap();
    }
    clock.advance(Duration::from_secs(30));
    run(&mut svc, req("c.example")).unwrap();
    assert_eq!(handle.len(), 3);
    clock.advance(Duration::from_secs(31));
    // Known keys never sweep...
    run(&mut svc, req("c.example")).unwrap();
    assert_eq!(handle.len(), 3);
    // ...a new key does: a and b were idle for 61 s, c for 31 s.
    run(&mut svc, req("d.example")).unwrap();
    let mut live: Vec<_> = handle.circuits().into_iter().map(|c| c.key).collect();
    live.sort();
    assert_eq!(live, [Arc::from("c.example"), Arc::from("d.example")]);
}

#[test]
fn an_open_circuit_is_kept_until_its_probe_time_however_idle() {
    let clock = FakeClock::new();
    let layer = builder(&clock)
        .open_duration(Duration::from_secs(8))
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(failing_for("down.example"));
    for _ in 0..3 {
        let _ = run(&mut svc, req("down.example"));
    }
    clock.advance(Duration::from_secs(5));
    assert_eq!(handle.evict_idle(), 0);
    assert_eq!(handle.state("down.example"), Some(CircuitState::Open));
    clock.advance(Duration::from_secs(3));
    assert_eq!(handle.evict_idle(), 1);
    assert!(handle.is_empty());
}

#[test]
fn requests_without_a_key_share_one_circuit_or_bypass_it() {
    let clock = FakeClock::new();
    let no_key = || {
        http::Request::builder()
            .uri("/v1/chat/completions")
            .body(())
            .unwrap()
    };
    let failing = Scripted::new(|_| Err(api(ErrorKind::Server, 500)));

    let layer = builder(&clock).build().unwrap();
    let mut svc = layer.layer(failing.clone());
    for _ in 0..3 {
        let _ = run(&mut svc, no_key());
    }
    assert_eq!(
        run(&mut svc, no_key()).unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    assert_eq!(layer.handle().state("(no key)"), Some(CircuitState::Open));

    let layer = builder(&clock).unkeyed(Unkeyed::Bypass).build().unwrap();
    let mut svc = layer.layer(failing.clone());
    for _ in 0..10 {
        assert_eq!(
            run(&mut svc, no_key()).unwrap_err().kind(),
            ErrorKind::Server
        );
    }
    assert!(layer.handle().is_empty());
}

#[test]
fn the_callback_names_keys_by_description_never_by_debug_or_secret() {
    let clock = FakeClock::new();
    let names = Arc::new(Mutex::new(Vec::new()));
    let sink = names.clone();
    let layer = builder(&clock)
        .on_transition(move |t| sink.lock().unwrap().push(t.key.to_owned()))
        .build()
        .unwrap();
    let mut svc = layer.layer(failing_for("api.example.com"));
    for _ in 0..3 {
        let _ = run(&mut svc, req("api.example.com:8443"));
    }
    assert_eq!(*names.lock().unwrap(), ["api.example.com:8443"]);

    // Keyed by API key: the alert shows a digest, never the key.
    let names = Arc::new(Mutex::new(Vec::new()));
    let sink = names.clone();
    let layer = builder(&clock)
        .key(ApiKey)
        .on_transition(move |t| sink.lock().unwrap().push(t.key.to_owned()))
        .build()
        .unwrap();
    let mut svc = layer.layer(Scripted::new(|_| Err(api(ErrorKind::Overloaded, 529))));
    for _ in 0..3 {
        let mut r = req("api.example.com");
        r.headers_mut().insert(
            "authorization",
            "Bearer sk-live-very-secret".parse().unwrap(),
        );
        let _ = run(&mut svc, r);
    }
    let names = names.lock().unwrap();
    assert_eq!(names.len(), 1);
    assert!(!names[0].contains("secret"));
    assert_eq!(
        names[0],
        towline_core::KeyHash::of(b"sk-live-very-secret").to_string()
    );
    let listed = format!("{:?}", layer.handle().circuits());
    assert!(!listed.contains("secret"), "{listed}");
}

#[test]
fn a_key_function_can_split_an_endpoint_by_model() {
    let clock = FakeClock::new();
    let layer = builder(&clock)
        .key(|r: &http::Request<()>| {
            let model = r.headers().get("x-model")?.to_str().ok()?.to_owned();
            Some((r.uri().authority()?.clone(), model))
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Scripted::new(|r| {
        if r.headers()["x-model"] == "kimi-k2" {
            Err(api(ErrorKind::Overloaded, 529))
        } else {
            ok()
        }
    }));
    let with_model = |model: &str| {
        let mut r = req("api.moonshot.ai");
        r.headers_mut().insert("x-model", model.parse().unwrap());
        r
    };
    for _ in 0..3 {
        let _ = run(&mut svc, with_model("kimi-k2"));
    }
    assert_eq!(
        run(&mut svc, with_model("kimi-k2")).unwrap_err().kind(),
        ErrorKind::CircuitOpen
    );
    run(&mut svc, with_model("moonshot-v1-8k")).unwrap();
    assert_eq!(
        handle.state("api.moonshot.ai/kimi-k2"),
        Some(CircuitState::Open)
    );
    assert_eq!(
        handle.state("api.moonshot.ai/moonshot-v1-8k"),
        Some(CircuitState::Closed)
    );
}

#[test]
fn an_endpoint_is_one_circuit_whatever_its_case_user_info_or_form() {
    let clock = FakeClock::new();
    let layer = builder(&clock).build().unwrap();
    let handle = layer.handle();
    let provider = Scripted::new(|_| Err(api(ErrorKind::Server, 500)));
    let mut svc = layer.layer(provider.clone());
    let relative = || {
        http::Request::builder()
            .uri("/v1/chat/completions")
            .header("host", "API.example.com")
            .body(())
            .unwrap()
    };
    // Three failures, through three spellings of one endpoint: one circuit, now open.
    let _ = run(&mut svc, req("api.example.com"));
    let _ = run(&mut svc, req("user:secret@Api.Example.COM"));
    let _ = run(&mut svc, relative());
    for request in [req("API.EXAMPLE.COM"), req("u@api.example.com"), relative()] {
        let err = run(&mut svc, request).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    }
    assert_eq!(provider.calls(), 3);
    assert_eq!(handle.len(), 1);
    // Named as first seen; user-info never appears.
    assert_eq!(handle.state("api.example.com"), Some(CircuitState::Open));
}
