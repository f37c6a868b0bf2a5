//! What the two examples share: their few flags, the embedded mock provider they run against
//! unless `--base-url` is given, and some printing. Nothing here is needed to use towline.

use std::time::Duration;

use towline::event::{Event, Observer};
use towline::mock::{Dialect, Fault, HintForm, MockProvider, MockServer, RetryAfter, Script};

const USAGE: &str = "\
usage: [--base-url URL] [--api-key-env NAME] [--model NAME]

Without --base-url, the call goes to the embedded mock provider, scripted to answer its first
attempt with a Moonshot-style 429 and `Retry-After: 1`: towline waits for the hint and retries.
With --base-url URL (any OpenAI-compatible API, e.g. https://api.moonshot.ai/v1), the API key is
read from the environment variable NAME (default MOONSHOT_API_KEY).";

/// The key the mock provider is scripted for.
const MOCK_KEY: &str = "sk-example";

/// Where the example sends its call.
pub(crate) struct Target {
    /// `POST {base_url}/chat/completions`.
    pub(crate) base_url: String,
    pub(crate) api_key: String,
    pub(crate) model: String,
    mock: Option<MockServer>,
}

impl Target {
    /// Reads the flags; starts the mock provider when no `--base-url` is given. Prints the
    /// usage and exits on a bad flag or a missing key.
    pub(crate) async fn from_args() -> Target {
        match Target::parse(std::env::args().skip(1)).await {
            Ok(target) => target,
            Err(message) => {
                eprintln!("{message}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }

    async fn parse(mut args: impl Iterator<Item = String>) -> Result<Target, String> {
        let (mut base_url, mut key_env, mut model) = (None, "MOONSHOT_API_KEY".to_owned(), None);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--base-url" => base_url = Some(value()?),
                "--api-key-env" => key_env = value()?,
                "--model" => model = Some(value()?),
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        match base_url {
            Some(base_url) => Ok(Target {
                base_url: base_url.trim_end_matches('/').to_owned(),
                api_key: std::env::var(&key_env)
                    .map_err(|_| format!("--base-url needs an API key in ${key_env}"))?,
                model: model.unwrap_or_else(|| "kimi-k2-0711-preview".to_owned()),
                mock: None,
            }),
            None => {
                let script = Script::new(Dialect::Moonshot).fault(
                    Fault::rate_limited(RetryAfter::secs(1).form(HintForm::Seconds)).first(1),
                );
                let mock = MockProvider::builder()
                    .key(MOCK_KEY, script)
                    .start()
                    .await
                    .map_err(|e| format!("cannot start the mock provider: {e}"))?;
                println!("mock provider listening on {}", mock.base_url());
                Ok(Target {
                    base_url: mock.base_url(),
                    api_key: MOCK_KEY.to_owned(),
                    model: model.unwrap_or_else(|| "mock-model".to_owned()),
                    mock: Some(mock),
                })
            }
        }
    }

    /// An OpenAI-style chat-completion request body.
    pub(crate) fn chat_body(&self, prompt: &str) -> String {
        serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
        })
        .to_string()
    }

    /// Prints what the mock provider saw (when there is one) and stops it.
    pub(crate) async fn finish(self) {
        let Some(mock) = self.mock else { return };
        let journal = mock.journal();
        println!("the mock provider saw {} attempt(s):", journal.total());
        if let Some(first) = journal.arrivals().first() {
            for arrival in journal.arrivals() {
                let status = arrival.status.map_or(0, |s| s.as_u16());
                let class = arrival
                    .error_kind()
                    .map(|k| format!(" {k}"))
                    .unwrap_or_default();
                let hint = arrival
                    .hint
                    .map(|h| format!(", asked to wait {h:?}"))
                    .unwrap_or_default();
                let at = arrival.at.duration_since(first.at).as_millis();
                println!("  +{at:>5} ms  {status}{class}{hint}");
            }
        }
        mock.shutdown().await;
    }
}

/// An observer that prints each decision towline takes for a call; put it in the request's
/// extensions.
pub(crate) fn print_events() -> Observer {
    Observer::new(|event| match event {
        Event::RetryScheduled {
            attempt,
            delay,
            reason,
        } => {
            println!(
                "towline: attempt {attempt} failed ({reason}), retrying in {}",
                ms(*delay)
            )
        }
        Event::KeyPaused { pause, cause } => {
            println!("towline: key paused for {} ({cause})", ms(*pause))
        }
        Event::ThrottleWaited { waited } => {
            println!("towline: waited {} for the key's turn", ms(*waited))
        }
        Event::RateLearned { per_second } => {
            println!("towline: the key's send rate is now {per_second:.2}/s")
        }
        other => println!("towline: {other:?}"),
    })
}

/// Prints the assistant's reply of a chat completion, or the raw body if it is something else.
pub(crate) fn print_reply(body: &[u8]) {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match json
        .as_ref()
        .and_then(|j| j["choices"][0]["message"]["content"].as_str())
    {
        Some(reply) => println!("reply: {reply}"),
        None => println!("response body: {}", String::from_utf8_lossy(body)),
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
