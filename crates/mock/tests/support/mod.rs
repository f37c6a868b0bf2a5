//! A real hyper-util client for the mock, shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use towline_mock::MockServer;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The server-sent events of the body, without their trailing blank line.
    pub fn events(&self) -> Vec<&str> {
        self.text().split_terminator("\n\n").collect()
    }
}

/// What a chat request carries.
#[derive(Debug, Clone, Default)]
pub struct Chat<'a> {
    pub key: Option<&'a str>,
    pub session: Option<&'a str>,
    pub stream: bool,
    pub path: Option<&'a str>,
    pub headers: Vec<(&'a str, &'a str)>,
}

impl<'a> Chat<'a> {
    pub fn key(key: &'a str) -> Self {
        Chat {
            key: Some(key),
            ..Chat::default()
        }
    }

    pub fn session(mut self, session: &'a str) -> Self {
        self.session = Some(session);
        self
    }

    pub fn stream(mut self) -> Self {
        self.stream = true;
        self
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn request(&self, server: &MockServer) -> Request<Full<Bytes>> {
        let url = format!(
            "http://{}{}",
            server.addr(),
            self.path.unwrap_or("/v1/chat/completions")
        );
        let mut builder = Request::post(url).header("content-type", "application/json");
        if let Some(key) = self.key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        if let Some(session) = self.session {
            builder = builder.header("x-session-id", session);
        }
        for (name, value) in &self.headers {
            builder = builder.header(*name, *value);
        }
        let body = format!(
            r#"{{"model":"kimi-k2","messages":[{{"role":"user","content":"hi"}}],"stream":{}}}"#,
            self.stream
        );
        builder.body(Full::from(body)).unwrap()
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let response = client.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e:?}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends a chat request and reads the whole response, which must arrive.
pub async fn chat(client: &HttpClient, server: &MockServer, chat: &Chat<'_>) -> Reply {
    send(client, chat.request(server))
        .await
        .expect("a response")
}

/// A GET of `path` on the server.
pub async fn get(client: &HttpClient, server: &MockServer, path: &str) -> Reply {
    let req = Request::get(format!("http://{}{path}", server.addr()))
        .body(Full::default())
        .unwrap();
    send(client, req).await.expect("a response")
}

/// Removes the whitespace outside JSON strings: a pretty-printed example as a server sends it.
pub fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}
