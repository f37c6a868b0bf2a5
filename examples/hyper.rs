//! The default towline stack over the hyper-util legacy client.
//!
//! ```text
//! cargo run --example hyper --all-features
//! MOONSHOT_API_KEY=sk-... cargo run --example hyper --all-features -- --base-url https://api.moonshot.ai/v1
//! ```
//!
//! Without `--base-url` the call goes to the embedded mock provider, whose first answer is a
//! 429 asking to wait a second: towline waits for the hint, retries, and returns the reply.

mod support;

use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let target = support::Target::from_args().await;

    // The client you already have: hyper-util with rustls (ring provider, Mozilla roots).
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(https);

    // Every towline layer over it, with its defaults. Build once; clones share all state.
    let service = towline::Stack::new().service(client);

    let request = http::Request::post(format!("{}/chat/completions", target.base_url))
        .header("authorization", format!("Bearer {}", target.api_key))
        .header("content-type", "application/json")
        .extension(support::print_events())
        .body(Full::new(Bytes::from(
            target.chat_body("Say hello in five words."),
        )))?;
    let code = match service.oneshot(request).await {
        Ok(response) => {
            let body = response.into_body().collect().await?.to_bytes();
            support::print_reply(&body);
            ExitCode::SUCCESS
        }
        // One typed error whatever the provider's dialect; its class says what to do.
        Err(error) => {
            println!("{} ({}): {error}", error.kind(), error.user_message());
            ExitCode::FAILURE
        }
    };
    target.finish().await;
    Ok(code)
}
