use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use towline_core::CircuitState;

use crate::shared::Shared;

/// A view of one circuit at one instant. See [`BreakerHandle::circuits`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitSnapshot {
    /// The key's description (see [`DescribeKey`](crate::DescribeKey)); `(no key)` for the
    /// circuit shared by requests without a key.
    pub key: Arc<str>,
    /// The circuit's state.
    pub state: CircuitState,
    /// Half-open probe calls in flight.
    pub probes_in_flight: u32,
    /// Half-open probe calls that succeeded so far.
    pub probe_successes: u32,
    /// While open: how long until a probe is let through.
    pub next_probe_in: Option<Duration>,
    /// While closed: calls recorded in the sliding window.
    pub window_calls: u64,
    /// While closed: failures recorded in the sliding window.
    pub window_failures: u64,
}

/// Inspects the circuits of a layer and of every service it built, for health endpoints,
/// dashboards and tests ("no probe left in flight" after a soak).
///
/// Get one from [`BreakerLayer::handle`](crate::BreakerLayer::handle) or
/// [`Breaker::handle`](crate::Breaker::handle). Reading it takes no lock on the call path.
///
/// ```
/// use towline_breaker::BreakerLayer;
///
/// let layer = BreakerLayer::new();
/// let handle = layer.handle();
/// assert_eq!(handle.len(), 0);
/// assert_eq!(handle.probes_in_flight(), 0);
/// ```
#[derive(Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

impl BreakerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        BreakerHandle { shared }
    }

    /// A snapshot of every live circuit, in no particular order.
    pub fn circuits(&self) -> Vec<CircuitSnapshot> {
        let now = self.shared.env.now_nanos();
        let mut out = Vec::with_capacity(self.shared.len());
        self.shared.for_each(&mut |node| {
            let view = node.circuit.view(&node.env.policy, now);
            out.push(CircuitSnapshot {
                key: Arc::clone(node.circuit.key()),
                state: view.state,
                probes_in_flight: view.probes_in_flight,
                probe_successes: view.probe_successes,
                next_probe_in: view.next_probe_in,
                window_calls: view.calls,
                window_failures: view.failures,
            });
        });
        out
    }

    /// The state of the circuit whose key is described as `key`, if it is live.
    ///
    /// ```
    /// # use towline_breaker::BreakerLayer;
    /// assert_eq!(BreakerLayer::new().handle().state("api.moonshot.ai"), None);
    /// ```
    pub fn state(&self, key: &str) -> Option<CircuitState> {
        let now = self.shared.env.now_nanos();
        let mut found = None;
        self.shared.for_each(&mut |node| {
            if &**node.circuit.key() == key {
                found = Some(node.circuit.view(&node.env.policy, now).state);
            }
        });
        found
    }

    /// Half-open probe calls in flight over every circuit. Zero once every call has finished
    /// or been dropped: a probe never outlives its call.
    pub fn probes_in_flight(&self) -> u32 {
        let now = self.shared.env.now_nanos();
        let mut total = 0;
        self.shared.for_each(&mut |node| {
            total += node.circuit.view(&node.env.policy, now).probes_in_flight;
        });
        total
    }

    /// The number of live circuits (keys seen and not yet evicted).
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether no circuit is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every circuit idle for the configured
    /// [`idle_timeout`](crate::BreakerBuilder::idle_timeout) now, instead of waiting for the
    /// next new key to trigger a sweep. Returns how many were forgotten.
    pub fn evict_idle(&self) -> usize {
        self.shared.evict_idle_at(self.shared.env.now_nanos())
    }
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("circuits", &self.len())
            .finish()
    }
}
