//! What reading the time costs: towline's layers read `tokio::time::Instant::now`, governor
//! reads `quanta`. tokio's `test-util` feature (which this package's dev-dependencies do not
//! enable, see Cargo.toml) puts an atomic load and a branch in front of every
//! `tokio::time::Instant::now`; this group shows what the build at hand pays.

use std::hint::black_box;

use criterion::Criterion;
use governor::clock::{Clock, DefaultClock};

use crate::support::Compare;

#[allow(clippy::disallowed_types)] // std's clock is the reference tokio's is compared with
pub(crate) fn bench_all(c: &mut Criterion) {
    if !crate::support::wants("clock") {
        return;
    }
    let mut group = Compare::new(c, "clock");
    group.case(
        "tokio_instant",
        || (),
        |()| black_box(tokio::time::Instant::now()),
    );
    group.case(
        "std_instant",
        || (),
        |()| black_box(std::time::Instant::now()),
    );
    let quanta = DefaultClock::default();
    group.case("quanta", || (), |()| black_box(quanta.now()));
}
