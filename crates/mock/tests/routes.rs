//! The OpenAI-compatible routes, and which script answers which request.

mod support;

use towline_core::ErrorKind;
use towline_mock::{Dialect, ErrorSpec, Fault, MockProvider, Scenario, Script, render};

use support::{Chat, chat, client, get, send};

#[tokio::test]
async fn chat_completion_json() {
    let server = MockProvider::builder().start().await.unwrap();
    let reply = chat(&client(), &server, &Chat::key("sk-1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let json = reply.json();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["model"], "kimi-k2", "the request's model is echoed");
    assert_eq!(json["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        json["choices"][0]["message"]["content"],
        Script::DEFAULT_REPLY
    );
    assert_eq!(json["choices"][0]["finish_reason"], "stop");
    assert!(json["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let id = reply.header("x-request-id").expect("a request id");
    assert!(id.starts_with("req-") && id.len() == 14, "{id}");
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn chat_completion_stream_ends_with_done() {
    let server = MockProvider::builder()
        .default_script(Script::default().chunks(3).reply("abcdef"))
        .start()
        .await
        .unwrap();
    let reply = chat(&client(), &server, &Chat::key("sk-1").stream()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events = reply.events();
    assert_eq!(
        events.len(),
        6,
        "role, 3 contents, finish, [DONE]: {events:?}"
    );
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    let chunks: Vec<serde_json::Value> = events[..5]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(content, "abcdef");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    let journal = server.journal();
    let arrival = &journal.arrivals()[0];
    assert!(arrival.stream);
    assert!(arrival.finished_at.unwrap() >= arrival.responded_at.unwrap());
}

#[tokio::test]
async fn models_are_listed() {
    let server = MockProvider::builder()
        .models(["kimi-k2", "moonshot-v1-8k"])
        .start()
        .await
        .unwrap();
    let reply = get(&client(), &server, "/v1/models").await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["object"], "list");
    let ids: Vec<&str> = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["kimi-k2", "moonshot-v1-8k"]);
}

#[tokio::test]
async fn routes_work_without_the_version_prefix() {
    let server = MockProvider::builder().start().await.unwrap();
    let client = client();
    let reply = chat(
        &client,
        &server,
        &Chat {
            path: Some("/chat/completions"),
            ..Chat::key("sk-1")
        },
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(get(&client, &server, "/models").await.status, 200);
    assert_eq!(server.base_url(), format!("http://{}/v1", server.addr()));
}

#[tokio::test]
async fn unknown_routes_and_malformed_bodies_get_dialect_errors() {
    let server = MockProvider::builder()
        .dialect(Dialect::KimiFreeApiDocumented)
        .start()
        .await
        .unwrap();
    let client = client();
    let missing = get(&client, &server, "/v1/embeddings").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["errcode"], -1002);

    let req = http::Request::post(server.url("/chat/completions"))
        .body(http_body_util::Full::from("{not json"))
        .unwrap();
    let malformed = send(&client, req).await.unwrap();
    assert_eq!(malformed.status, 400);
    assert_eq!(
        malformed.body,
        render(
            Dialect::KimiFreeApiDocumented,
            &ErrorKind::InvalidRequest.into()
        )
        .body
    );
    let journal = server.journal();
    let causes: Vec<_> = journal.arrivals().iter().map(|a| a.cause).collect();
    assert_eq!(
        causes,
        [
            towline_mock::Cause::UnknownRoute,
            towline_mock::Cause::MalformedRequest
        ]
    );
}

#[tokio::test]
async fn scripts_are_chosen_by_key_session_or_both() {
    let failing = |status: u16| {
        Script::new(Dialect::OpenAi).fault(Fault::error(
            ErrorSpec::new(ErrorKind::Server).status(status),
        ))
    };
    let scenario = Scenario::new()
        .default_script(failing(500))
        .key("sk-a", failing(502))
        .session("s1", failing(503))
        .key_session("sk-a", "s1", failing(504));
    let server = MockProvider::new(scenario).unwrap().start().await.unwrap();
    let client = client();
    let status = |chat_req: Chat<'static>| {
        let client = client.clone();
        let server = &server;
        async move {
            support::chat(&client, server, &chat_req)
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(status(Chat::default()).await, 500, "no key: default");
    assert_eq!(status(Chat::key("sk-b")).await, 500, "unknown key: default");
    assert_eq!(status(Chat::key("sk-a")).await, 502, "by key");
    assert_eq!(
        status(Chat::key("sk-b").session("s1")).await,
        503,
        "by session"
    );
    assert_eq!(
        status(Chat::key("sk-a").session("s1")).await,
        504,
        "by both"
    );
    assert_eq!(
        status(Chat::key("sk-a").session("s2")).await,
        502,
        "key, other session"
    );
    // `x-api-key` names the key as well as a bearer token does.
    let by_header = Chat::default().header("x-api-key", "sk-a");
    assert_eq!(status(by_header).await, 502);
}
