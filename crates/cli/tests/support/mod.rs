//! Running the `towline` binary as a process, and what every test checks of its output.
// Each test file uses a part of this module.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The longest any one run may take before the test fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What one run of `towline` printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Run {
    /// The exit code (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// A `towline` command with `args`, its stdin closed, killed if the test drops it.
pub(crate) fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_towline"));
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs `towline args...` to its end.
pub(crate) async fn towline(args: &[&str]) -> Run {
    let output = tokio::time::timeout(RUN_LIMIT, command(args).output())
        .await
        .unwrap_or_else(|_| panic!("towline {args:?} did not finish within {RUN_LIMIT:?}"))
        .expect("the towline binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Run {
    /// Asserts the run succeeded, and returns its stdout.
    pub(crate) fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self.assert_no_panic();
        &self.stdout
    }

    /// Asserts the run failed the way the contract says: exit `code`, nothing on stdout, and
    /// one line on stderr, `towline: ...`. Returns that line.
    pub(crate) fn one_line_error(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self.assert_no_panic();
        assert_eq!(self.stdout, "", "{self:#?}");
        let line = self
            .stderr
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("stderr ends its line: {self:#?}"));
        assert!(!line.contains('\n'), "one line on stderr: {self:#?}");
        assert!(line.starts_with("towline: "), "{self:#?}");
        line
    }

    fn assert_no_panic(&self) {
        assert_ne!(self.code, Some(101), "a panic's exit code: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
    }
}
