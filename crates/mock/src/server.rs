//! The server: configuration, binding, the accept loop, shutdown.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use http::HeaderName;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::Dialect;
use crate::error::{ScriptError, StartError};
use crate::journal::Journal;
use crate::script::{Scenario, Script};
use crate::state::Shared;

/// Headers that carry credentials: the journal never records them.
const SECRET_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
];

/// The request headers the journal records unless told otherwise.
pub const DEFAULT_RECORDED_HEADERS: [&str; 4] = [
    "traceparent",
    "tracestate",
    "idempotency-key",
    "x-session-id",
];

/// A validated mock provider, ready to [`start`](MockProvider::start).
///
/// ```
/// use towline_mock::{Dialect, MockProvider, Scenario};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let provider = MockProvider::new(Scenario::new()).unwrap();
/// let server = provider.start().await.unwrap();
/// assert!(server.base_url().starts_with("http://127.0.0.1:"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MockProvider {
    scenario: Scenario,
    port: u16,
    record_headers: Vec<HeaderName>,
    journal_limit: Option<usize>,
}

impl MockProvider {
    /// A builder, starting from a scenario where everything succeeds.
    pub fn builder() -> MockProviderBuilder {
        MockProviderBuilder::default()
    }

    /// A provider serving `scenario`, on any free port.
    pub fn new(scenario: Scenario) -> Result<Self, ScriptError> {
        MockProvider::builder().scenario(scenario).build()
    }

    /// The scenario it serves.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Binds `127.0.0.1` (on the configured port, or any free one) and starts serving on the
    /// current tokio runtime.
    pub async fn start(self) -> Result<MockServer, StartError> {
        let port = self.port;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|source| StartError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { port, source })?;
        let shared = Arc::new(Shared::new(
            &self.scenario,
            self.record_headers,
            self.journal_limit,
        ));
        let listener = Arc::new(Mutex::new(Some(listener)));
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(accept_loop(listener.clone(), stop.clone(), shared.clone()));
        Ok(MockServer {
            addr,
            shared,
            listener,
            stop,
            task: Some(task),
        })
    }
}

/// Builds a [`MockProvider`]: the scenario (scripts per key and session, seed, models) and the
/// server's options (port, recorded headers, journal size).
///
/// ```
/// use std::time::Duration;
/// use towline_mock::{Dialect, Fault, MockProvider, RetryAfter, Script};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let server = MockProvider::builder()
///     .dialect(Dialect::Moonshot)
///     .key("sk-busy", Script::new(Dialect::Moonshot).fault(Fault::rate_limited(RetryAfter::secs(1)).first(1)))
///     .seed(42)
///     .record_header("x-tenant")
///     .start()
///     .await
///     .unwrap();
/// # drop(server);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MockProviderBuilder {
    scenario: Scenario,
    port: u16,
    record_headers: Vec<String>,
    journal_limit: Option<usize>,
}

impl Default for MockProviderBuilder {
    fn default() -> Self {
        MockProviderBuilder {
            scenario: Scenario::new(),
            port: 0,
            record_headers: DEFAULT_RECORDED_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            journal_limit: None,
        }
    }
}

impl MockProviderBuilder {
    /// Replaces the whole scenario (e.g. one loaded with [`Scenario::from_file`]).
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenario = scenario;
        self
    }

    /// The dialect of the default script.
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.scenario.default.dialect = dialect;
        self
    }

    /// The script for requests no other script selects.
    pub fn default_script(mut self, script: Script) -> Self {
        self.scenario = self.scenario.default_script(script);
        self
    }

    /// The script for API key `key`.
    pub fn key(mut self, key: impl Into<String>, script: Script) -> Self {
        self.scenario = self.scenario.key(key, script);
        self
    }

    /// The script for session `session`.
    pub fn session(mut self, session: impl Into<String>, script: Script) -> Self {
        self.scenario = self.scenario.session(session, script);
        self
    }

    /// The script for API key `key` in session `session`.
    pub fn key_session(
        mut self,
        key: impl Into<String>,
        session: impl Into<String>,
        script: Script,
    ) -> Self {
        self.scenario = self.scenario.key_session(key, session, script);
        self
    }

    /// The seed of random faults.
    pub fn seed(mut self, seed: u64) -> Self {
        self.scenario = self.scenario.seed(seed);
        self
    }

    /// The models `GET /v1/models` lists.
    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.scenario = self.scenario.models(models);
        self
    }

    /// Binds this port instead of a free one (0).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Also records request header `name` in the journal. Credential headers
    /// (`authorization`, `x-api-key`, cookies, ...) are refused when built.
    pub fn record_header(mut self, name: impl Into<String>) -> Self {
        self.record_headers.push(name.into());
        self
    }

    /// Keeps only the last `limit` arrivals in the journal (0: none), so that long benchmarks
    /// run in bounded memory. Unbounded by default.
    pub fn journal_limit(mut self, limit: usize) -> Self {
        self.journal_limit = Some(limit);
        self
    }

    /// Validates everything.
    pub fn build(self) -> Result<MockProvider, ScriptError> {
        self.scenario.validate()?;
        let mut record_headers: Vec<HeaderName> = Vec::new();
        for (i, name) in self.record_headers.iter().enumerate() {
            let field = format!("record_headers[{i}]");
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| ScriptError::new(&field, format!("`{name}` is not a header name")))?;
            if SECRET_HEADERS.contains(&header.as_str()) {
                return Err(ScriptError::new(
                    field,
                    format!("`{header}` carries credentials; the journal never records it"),
                ));
            }
            if !record_headers.contains(&header) {
                record_headers.push(header);
            }
        }
        Ok(MockProvider {
            scenario: self.scenario,
            port: self.port,
            record_headers,
            journal_limit: self.journal_limit,
        })
    }

    /// Validates everything and starts the server.
    pub async fn start(self) -> Result<MockServer, StartError> {
        self.build()?.start().await
    }
}

type ListenerSlot = Arc<Mutex<Option<TcpListener>>>;

/// A running mock provider on `127.0.0.1`.
///
/// Dropping it closes the listening socket at once (a new connection is refused) and aborts
/// every connection; [`shutdown`](MockServer::shutdown) does the same and waits until every
/// task of the server has ended.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: ListenerSlot,
    stop: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, what an OpenAI-compatible client takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL followed by `path` (`"/chat/completions"`, `"/models"`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// When the server started: the origin of the scripts' time windows.
    pub fn started_at(&self) -> Instant {
        self.shared.started
    }

    /// A snapshot of the journal.
    pub fn journal(&self) -> Journal {
        self.shared.journal()
    }

    /// Forgets the journal so far (counters, rate limits and sessions in flight are kept).
    pub fn clear_journal(&self) {
        self.shared.clear_journal();
    }

    /// How many requests have arrived since the server started (journaled or not).
    pub fn arrivals(&self) -> u64 {
        self.shared.arrivals()
    }

    /// How many sessions have a request in flight right now.
    pub fn sessions_in_flight(&self) -> usize {
        self.shared.sessions_in_flight()
    }

    /// Stops accepting, aborts every connection and waits until all of the server's tasks
    /// have ended.
    pub async fn shutdown(mut self) {
        close(&self.listener);
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            // The accept loop joins its connections before it returns; an error here only
            // means the runtime is shutting down, which ends them too.
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // Closing the socket here, synchronously, is what makes the next connect fail at once
        // rather than whenever the runtime gets to cancel the accept loop.
        close(&self.listener);
        if let Some(task) = self.task.take() {
            // Dropping the loop drops its JoinSet, which aborts every connection task.
            task.abort();
        }
    }
}

fn close(listener: &ListenerSlot) {
    let taken = listener
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    drop(taken);
}

/// Accepts from the listener in `slot` until it is taken away or `stop` is notified.
async fn accept(slot: &ListenerSlot) -> Option<io::Result<TcpStream>> {
    poll_fn(|cx| {
        let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(listener) => listener
                .poll_accept(cx)
                .map(|accepted| Some(accepted.map(|(stream, _)| stream))),
            None => Poll::Ready(None),
        }
    })
    .await
}

async fn accept_loop(slot: ListenerSlot, stop: Arc<Notify>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.notified() => break,
            accepted = accept(&slot) => match accepted {
                Some(Ok(stream)) => {
                    connections.spawn(serve(stream, shared.clone()));
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
                None => break,
            },
            // Reap finished connections so that the set does not grow with every one.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    close(&slot);
    connections.shutdown().await;
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    // Small writes (SSE events) must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| crate::service::handle(shared.clone(), req));
    // No header-read timeout: it would need a timer, and under paused test time it would close
    // idle keep-alive connections under a client's feet.
    let _ = http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
