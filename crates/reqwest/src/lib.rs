//! Run the towline stack over [reqwest](https://docs.rs/reqwest).
//!
//! reqwest's `Client` is a `tower::Service<reqwest::Request>`; towline's layers speak
//! `http::Request<B>` → `http::Response<_>`. [`ReqwestService`] is the thin adapter between the
//! two: it converts each request with `reqwest::Request::try_from`, sends it with the user's own
//! client (its pool, TLS, proxy and timeouts stay in force), and hands back an
//! `http::Response<ResponseBody>` whose body streams the answer.
//!
//! Errors never carry the request URL: reqwest includes it in its errors, and a URL may hold a
//! credential in its query (Gemini's `?key=`), so the adapter strips it before anything can log
//! it.
//!
//! ```no_run
//! # async fn run() -> Result<(), towline_core::Error> {
//! use tower::ServiceExt;
//! use towline_reqwest::ReqwestService;
//!
//! let client = ReqwestService::new(reqwest::Client::new());
//! let request = http::Request::post("https://api.moonshot.ai/v1/chat/completions")
//!     .header("authorization", "Bearer sk-...")
//!     .header("content-type", "application/json")
//!     .body(String::from(r#"{"model":"kimi-k2-0711-preview","messages":[]}"#))
//!     .unwrap();
//! let response = client.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;
use towline_core::{BoxError, Error};

/// A `tower::Service<http::Request<B>>` that sends requests with a `reqwest::Client`.
///
/// Cloning it is cheap (reqwest's client is reference counted) and every clone shares the
/// connection pool.
///
/// ```
/// let service = towline_reqwest::ReqwestService::new(reqwest::Client::new());
/// let _also = service.clone();
/// ```
#[derive(Debug, Clone)]
pub struct ReqwestService {
    client: reqwest::Client,
}

impl ReqwestService {
    /// Sends requests with `client`.
    pub fn new(client: reqwest::Client) -> Self {
        ReqwestService { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl From<reqwest::Client> for ReqwestService {
    fn from(client: reqwest::Client) -> Self {
        ReqwestService::new(client)
    }
}

impl<B> Service<http::Request<B>> for ReqwestService
where
    B: Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ResponseBody>;
    type Error = Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // reqwest's client is always ready: its pool queues internally.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> ResponseFuture {
        let request = request.map(reqwest::Body::wrap);
        let state = match reqwest::Request::try_from(request) {
            Ok(request) => State::Sending {
                pending: self.client.call(request),
            },
            Err(e) => State::Invalid {
                error: Some(transport(e)),
            },
        };
        ResponseFuture { state }
    }
}

// reqwest does not export its `Pending` future by name; its `Service` impl does.
type Pending = <reqwest::Client as Service<reqwest::Request>>::Future;

/// A reqwest error without its URL, as a towline transport error.
fn transport(error: reqwest::Error) -> Error {
    Error::transport(error.without_url())
}

pin_project! {
    /// The future of [`ReqwestService::call`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending { #[pin] pending: Pending },
        Invalid { error: Option<Error> },
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<ResponseBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { pending } => {
                let response = ready!(pending.poll(cx)).map_err(transport)?;
                let response: http::Response<reqwest::Body> = response.into();
                Poll::Ready(Ok(response.map(|inner| ResponseBody { inner })))
            }
            StateProj::Invalid { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

pin_project! {
    /// The body of a response received through [`ReqwestService`]. Its errors are towline
    /// transport errors without the URL.
    pub struct ResponseBody {
        #[pin]
        inner: reqwest::Body,
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map(|frame| frame.map(|r| r.map_err(transport)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use towline_core::ErrorKind;

    #[tokio::test]
    async fn connection_refused_is_a_transport_error_without_the_url() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/v1/chat/completions?key=sk-query-secret");
        let request = http::Request::post(url).body(String::new()).unwrap();
        let err = ReqwestService::new(reqwest::Client::new())
            .oneshot(request)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transport);
        assert!(!format!("{err} {err:?}").contains("sk-query-secret"));
    }

    #[tokio::test]
    async fn relative_uri_is_rejected_as_transport_error() {
        let request = http::Request::get("/v1/models")
            .body(String::new())
            .unwrap();
        let err = ReqwestService::new(reqwest::Client::new())
            .oneshot(request)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transport);
    }

    #[tokio::test]
    async fn response_body_streams_through() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
        });
        let request = http::Request::post(format!("http://{addr}/"))
            .body(String::from("{}"))
            .unwrap();
        let response = ReqwestService::new(reqwest::Client::new())
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), b"ok");
    }
}
