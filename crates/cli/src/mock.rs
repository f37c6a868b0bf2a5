//! `towline mock`: serve the mock provider until interrupted.

use std::path::PathBuf;

use clap::Args;
use towline::mock::{Dialect, MockProvider, Scenario};

use crate::CliError;

/// `towline mock [--port P] [--dialect D] [--script FILE]`
#[derive(Debug, Clone, Args)]
pub(crate) struct MockArgs {
    /// Port to listen on (127.0.0.1). Default: any free port.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    port: u16,

    /// Dialect errors are written in for keys the script does not name (openai, moonshot,
    /// mimo, kaiko, aiapi, kimi_free_api, kimi_free_api_documented, anthropic, gemini).
    #[arg(long, value_name = "DIALECT")]
    dialect: Option<Dialect>,

    /// Fault script, JSON or TOML. Default: succeed for every key.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
}

impl MockArgs {
    pub(crate) async fn run(self) -> Result<(), CliError> {
        let scenario = match &self.script {
            Some(path) => Scenario::from_file(path)
                .map_err(|e| CliError::usage(format!("bad --script {}: {e}", path.display())))?,
            None => Scenario::new(),
        };
        let mut builder = MockProvider::builder().scenario(scenario).port(self.port);
        if let Some(dialect) = self.dialect {
            builder = builder.dialect(dialect);
        }
        let server = builder
            .start()
            .await
            .map_err(|e| CliError::run(format!("cannot start the mock provider: {e}")))?;
        println!("{}", server.base_url());
        eprintln!(
            "towline mock: serving {} (POST /v1/chat/completions, GET /v1/models); Ctrl-C stops",
            server.base_url()
        );
        tokio::signal::ctrl_c()
            .await
            .map_err(|e| CliError::run(format!("cannot wait for Ctrl-C: {e}")))?;
        eprintln!("towline mock: {} requests served", server.arrivals());
        server.shutdown().await;
        Ok(())
    }
}
