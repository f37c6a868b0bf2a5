//! towline's benchmarks, each layer side by side with its peer on the same work, in one run.
//!
//! Organized like governor's: this entry file, one module per area (`benches/main/*.rs`, out of
//! cargo's sight so that they are not benches of their own), each with a `bench_all`.
//! Every group holds `towline` and its peer (or the bare service where no crate does the same
//! work), measured one after the other with `Throughput::Elements(1)`: read the ratio, not the
//! absolute numbers, on a busy machine.
//!
//! ```text
//! cargo bench --bench main                 # everything (about 5 minutes)
//! cargo bench --bench main -- retry        # one area (a criterion filter)
//! scripts/bench-compare                    # the comparison table, reduced samples
//! ```
//!
//! Instruction counts (a stable second opinion on a noisy machine) come from the same cases run
//! outside criterion: `TOWLINE_BENCH_COUNT=<group>/<case> TOWLINE_BENCH_ITERS=<n>` runs that one
//! case `n` times and exits; `scripts/bench-compare --instructions` runs it under callgrind at
//! two iteration counts and divides the difference.
//!
//! The modules run in this order on purpose: `trace` is last because its peer installs a
//! scoped `tracing` subscriber, which makes every later `tracing` call site slower.

mod breaker;
mod clock;
mod e2e;
mod normalize;
mod redis_store;
mod retry;
mod session;
mod stack;
mod support;
mod throttle;
mod trace;

use criterion::{criterion_group, criterion_main};

criterion_group! {
    name = benches;
    config = support::criterion();
    targets =
        clock::bench_all,
        normalize::bench_all,
        retry::bench_all,
        breaker::bench_all,
        throttle::bench_all,
        session::bench_all,
        stack::bench_all,
        e2e::bench_all,
        redis_store::bench_all,
        trace::bench_all,
}
criterion_main!(benches);
