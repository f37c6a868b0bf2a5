//! `towline soak`: send load through the full stack and report what happened to every call.

mod args;
mod load;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use tower::ServiceBuilder;
use towline::ReplayBody;
use towline::breaker::BreakerLayer;
use towline::mock::{MockProvider, MockServer, Scenario};
use towline::normalize::NormalizeLayer;
use towline::retry::RetryLayer;
use towline::throttle::ThrottleLayer;
use towline::trace::TraceLayer;

pub(crate) use args::{ReportFormat, SoakArgs};
use load::Plan;
use report::{MockSummary, Report};

use crate::CliError;

/// Keys used against the embedded mock provider when no `--api-key` is given. Each one is
/// scripted differently in the mixed scenario: three ordinary keys (rate limits with hints,
/// random 500s, broken streams, an outage window), a kimi-free-api key with a tight bucket,
/// a key whose quota is gone and a revoked one.
const MOCK_KEYS: [&str; 6] = [
    "sk-soak-1",
    "sk-soak-2",
    "sk-soak-3",
    "sk-kimi",
    "sk-quota",
    "sk-revoked",
];

/// The breaker's default cap on how long it stays open (`towline::breaker` documents 30 s).
const BREAKER_MAX_OPEN: Duration = Duration::from_secs(30);

/// How long to wait for a TCP connection to `--target` before calling it unreachable.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(5);

impl SoakArgs {
    pub(crate) async fn run(self) -> Result<(), CliError> {
        let settings = self.validate()?;
        let mock = match &self.target {
            Some(_) => None,
            None => Some(self.start_mock().await?),
        };
        let (base, keys) = match (&self.target, &mock) {
            (Some(target), _) => (target.clone(), self.api_keys.clone()),
            (None, Some(mock)) => {
                let keys = if self.api_keys.is_empty() {
                    MOCK_KEYS.iter().map(|k| (*k).to_owned()).collect()
                } else {
                    self.api_keys.clone()
                };
                (mock.base_url(), keys)
            }
            (None, None) => unreachable!("a mock is started when there is no target"),
        };
        let url = chat_url(&base)?;
        preflight(&url).await?;

        let plan = Arc::new(Plan {
            url,
            keys: keys
                .iter()
                .map(|k| Plan::bearer(k))
                .collect::<Result<_, _>>()
                .map_err(|_| CliError::usage("an --api-key is not a valid header value"))?,
            sessions: self.sessions,
            requests: self.requests,
            concurrency: self.concurrency as usize,
            stream: self.stream,
            model: self.model.clone(),
        });

        let attempts = Arc::new(AtomicU64::new(0));
        let service = settings.stack.service(counting_client(attempts.clone())?);
        let progress = progress_bar(self.requests);
        let mut report = load::run(service, plan, attempts, progress).await;
        report.target = match &self.target {
            Some(_) => base.trim_end_matches('/').to_owned(),
            None => "embedded mock provider (mixed fault script)".to_owned(),
        };
        if let Some(mock) = mock {
            report.mock = Some(mock_summary(&mock));
            mock.shutdown().await;
        }
        print_report(&report, self.report);
        Ok(())
    }

    /// Every flag checked before anything starts, and the stack they describe.
    fn validate(&self) -> Result<Settings, CliError> {
        if self.requests == 0 {
            return Err(CliError::usage("--requests must be at least 1"));
        }
        if self.target.is_some() && self.api_keys.is_empty() {
            return Err(CliError::usage("--target needs at least one --api-key"));
        }
        let mut retry = RetryLayer::builder()
            .max_retries(self.max_retries)
            .budget_ratio(self.retry_budget)
            .seed(self.seed);
        if let Some(ms) = self.deadline_ms {
            retry = retry.deadline(Duration::from_millis(ms));
        }
        let retry = retry
            .build()
            .map_err(|e| CliError::usage(flag_error("retry", &e)))?;

        let mut throttle = ThrottleLayer::builder();
        if let Some(rate) = self.rate {
            throttle = throttle.rate(rate).burst(self.burst.unwrap_or(1));
        }
        let throttle = throttle
            .build()
            .map_err(|e| CliError::usage(flag_error("rate/--burst", &e)))?;

        let mut breaker = BreakerLayer::builder();
        if let Some(ms) = self.breaker_open_ms {
            // Repeated failed probes still lengthen the wait, up to the breaker's usual cap or
            // the flag's value, whichever is longer (a cap below it would reject the flag).
            let open = Duration::from_millis(ms);
            breaker = breaker
                .open_duration(open)
                .max_open_duration(open.max(BREAKER_MAX_OPEN));
        }
        let breaker = breaker
            .build()
            .map_err(|e| CliError::usage(flag_error("breaker-open-ms", &e)))?;

        // No OpenTelemetry SDK is installed by the command: spans cost nothing, and metric
        // points would go nowhere.
        let trace = TraceLayer::builder()
            .metrics(false)
            .build()
            .map_err(|e| CliError::run(e.to_string()))?;

        // kimi-free-api answers its errors with HTTP 200: look inside small JSON successes.
        let normalize = NormalizeLayer::builder()
            .inspect_ok_json(true)
            .build()
            .map_err(|e| CliError::run(e.to_string()))?;

        let mut stack = towline::Stack::new()
            .normalize(normalize)
            .trace(trace)
            .retry(retry)
            .throttle(throttle)
            .breaker(breaker);
        if let Some(ms) = self.timeout {
            stack = stack
                .attempt_timeout(Duration::from_millis(ms))
                .map_err(|e| CliError::usage(flag_error("timeout", &e)))?;
        }
        Ok(Settings { stack })
    }

    async fn start_mock(&self) -> Result<MockServer, CliError> {
        let scenario = match &self.script {
            Some(path) => Scenario::from_file(path)
                .map_err(|e| CliError::usage(format!("bad --script {}: {e}", path.display())))?,
            None => Scenario::mixed(),
        };
        MockProvider::builder()
            .scenario(scenario)
            .seed(self.seed)
            .start()
            .await
            .map_err(|e| CliError::run(format!("cannot start the embedded mock provider: {e}")))
    }
}

/// What the flags describe.
struct Settings {
    stack: towline::Stack,
}

fn flag_error(flag: &str, error: &dyn std::fmt::Display) -> String {
    format!("invalid --{flag}: {error}")
}

/// `{base}/chat/completions`, checked to be an absolute http(s) URL.
fn chat_url(base: &str) -> Result<Uri, CliError> {
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let uri: Uri = url
        .parse()
        .map_err(|_| CliError::usage(format!("--target {base:?} is not a valid URL")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(CliError::usage(format!(
            "--target {base:?} must be an absolute http:// or https:// URL"
        ))),
    }
}

/// One TCP connection to the target, so an unreachable target is one clear error rather than
/// a thousand transport failures.
async fn preflight(url: &Uri) -> Result<(), CliError> {
    let host = url.host().expect("checked by chat_url");
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let connect = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port));
    match tokio::time::timeout(PREFLIGHT_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CliError::run(format!("cannot reach {host}:{port}: {e}"))),
        Err(_) => Err(CliError::run(format!(
            "cannot reach {host}:{port}: no connection within {PREFLIGHT_TIMEOUT:?}"
        ))),
    }
}

/// A hyper-util client (HTTP and HTTPS) that counts every attempt it sends.
fn counting_client(
    attempts: Arc<AtomicU64>,
) -> Result<
    impl tower::Service<
        http::Request<ReplayBody<Full<Bytes>>>,
        Response = http::Response<hyper::body::Incoming>,
        Error = hyper_util::client::legacy::Error,
        Future: Send,
    > + Clone
    + Send
    + 'static,
    CliError,
> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CliError::run(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    Ok(ServiceBuilder::new()
        .map_request(move |request| {
            attempts.fetch_add(1, Ordering::Relaxed);
            request
        })
        .service(client))
}

fn progress_bar(requests: u64) -> ProgressBar {
    let bar = ProgressBar::new(requests);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
        )
        .expect("valid template"),
    );
    bar
}

fn mock_summary(mock: &MockServer) -> MockSummary {
    let journal = mock.journal();
    MockSummary {
        arrivals: journal.arrivals().len(),
        // Requests already on the wire when a hint was sent could not have known it.
        early_arrivals: journal
            .early_arrivals_any_key(Duration::from_millis(5))
            .len(),
        max_session_overlap: journal.max_session_concurrency(),
        statuses: journal.count_by_status(),
    }
}

fn print_report(report: &Report, format: ReportFormat) {
    match format {
        ReportFormat::Json => {
            println!(
                "{}",
                serde_json::to_string(report).expect("serializable report")
            );
        }
        ReportFormat::Table => print!("{}", report.table()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls_are_checked() {
        assert_eq!(
            chat_url("https://api.moonshot.ai/v1/").unwrap().to_string(),
            "https://api.moonshot.ai/v1/chat/completions"
        );
        assert!(chat_url("not a url").is_err());
        assert!(chat_url("ftp://x/v1").is_err());
        assert!(chat_url("/v1").is_err());
        // The error names the URL as given.
        let err = chat_url("http://").unwrap_err();
        assert!(err.to_string().contains("\"http://\""), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_target_is_one_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = chat_url(&format!("http://127.0.0.1:{port}/v1")).unwrap();
        let err = preflight(&url).await.unwrap_err();
        assert!(err.to_string().contains("cannot reach 127.0.0.1"), "{err}");
    }
}
