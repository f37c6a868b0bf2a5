//! Figures criterion does not record (percentiles, calls per second, bytes): printed, and
//! appended as JSON lines to `$TOWLINE_BENCH_REPORT` when set (`scripts/bench-compare` sets
//! it and puts them in its table).

use std::io::Write;

/// Prints `name = value unit` and records it.
pub(crate) fn figure(name: &str, value: f64, unit: &str) {
    println!("towline-bench: {name} = {value:.1} {unit}");
    let Ok(path) = std::env::var("TOWLINE_BENCH_REPORT") else {
        return;
    };
    let line = serde_json::json!({ "name": name, "value": value, "unit": unit });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}
