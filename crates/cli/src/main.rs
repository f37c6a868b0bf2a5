//! The `towline` command.
//!
//! - `towline soak` sends load through the full towline stack, against the embedded mock
//!   provider (the default) or a real OpenAI-compatible API, and reports what happened.
//! - `towline mock` serves the mock provider for your own tests.
//! - `towline classify` tells what towline makes of one provider response.
#![forbid(unsafe_code)]

mod classify;
mod mock;
mod soak;

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Make LLM provider calls dependable: soak the towline stack, serve the mock provider, or
/// classify a provider response.
#[derive(Debug, Parser)]
#[command(name = "towline", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tell what towline makes of one provider response (prints one JSON object).
    Classify(classify::ClassifyArgs),
    /// Serve the mock provider (a real HTTP server speaking every provider dialect, with
    /// scripted faults) until Ctrl-C; prints its base URL on stdout.
    Mock(mock::MockArgs),
    /// Send load through the full towline stack, against the embedded mock provider (default)
    /// or a real OpenAI-compatible API, and report what happened to every call.
    Soak(soak::SoakArgs),
}

/// A failure the command reports in one line before exiting non-zero.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// Bad flags or input: exit code 2, like clap's own usage errors.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 2,
        }
    }

    /// The run itself failed (unreachable target, server could not start): exit code 1.
    pub(crate) fn run(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::run(format!("cannot start the async runtime: {e}")))
}

/// The command line, or a usage error on one line. `--help` and `--version` print and exit as
/// clap does.
fn parse() -> Result<Cli, CliError> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => CliError::usage(one_line(&e.render().to_string())),
    })
}

/// A clap error message on one line: its first paragraph without the `error: ` prefix, lines
/// joined (a list of missing arguments stays in), then a pointer to `--help`.
fn one_line(rendered: &str) -> String {
    let message = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} (see --help)")
}

fn main() -> ExitCode {
    let result = parse().and_then(run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("towline: {e}");
            ExitCode::from(e.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Classify(args) => args.run().map(|json| println!("{json}")),
        Command::Mock(args) => runtime().and_then(|rt| rt.block_on(args.run())),
        Command::Soak(args) => runtime().and_then(|rt| rt.block_on(args.run())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_fit_on_one_line() {
        let err = Cli::try_parse_from(["towline", "soak", "--burst", "3"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert_eq!(
            line,
            "the following required arguments were not provided: --rate <R> (see --help)"
        );
        let err = Cli::try_parse_from(["towline", "soak", "--requests", "x"]).unwrap_err();
        let line = one_line(&err.render().to_string());
        assert!(
            line.starts_with("invalid value 'x' for '--requests <N>'"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
