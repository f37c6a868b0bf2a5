//! The state every clone of a breaker shares: settings, hooks, and one circuit per key.

use std::any::Any;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use http::uri::Authority;
use tokio::time::Instant;
use towline_core::event::{Event, Observer};
use towline_core::{Error, Nanos};

use crate::circuit::{Change, Circuit, Outcome};
use crate::hash::{DigestHasher, EndpointDigest, RandomKeyState};
use crate::key::DescribeKey;
use crate::policy::Policy;
use crate::{Transition, Unkeyed};

/// Decides whether an error counts as a failure.
pub(crate) type FailurePredicate = dyn Fn(&Error) -> bool + Send + Sync;
/// The user's transition callback.
pub(crate) type TransitionHook = dyn Fn(&Transition<'_>) + Send + Sync;
/// Reads the clock.
pub(crate) type Now = dyn Fn() -> Instant + Send + Sync;

/// Everything a circuit needs to decide and report, reached from each circuit without touching
/// the layer-wide `Arc` on the hot path.
pub(crate) struct Env {
    pub(crate) policy: Policy,
    now: Box<Now>,
    origin: Instant,
    is_failure: Option<Arc<FailurePredicate>>,
    on_transition: Option<Arc<TransitionHook>>,
}

impl Env {
    pub(crate) fn new(
        policy: Policy,
        now: Box<Now>,
        is_failure: Option<Arc<FailurePredicate>>,
        on_transition: Option<Arc<TransitionHook>>,
    ) -> Env {
        let origin = now();
        Env {
            policy,
            now,
            origin,
            is_failure,
            on_transition,
        }
    }

    /// Nanoseconds since the breaker was built.
    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        Nanos::since(self.origin, (self.now)()).0
    }

    /// What `err` says about the provider: a counted failure (by default
    /// [`ErrorKind::is_provider_failure`](towline_core::ErrorKind::is_provider_failure)),
    /// nothing at all (a local decision), or an answer from a live provider.
    pub(crate) fn classify(&self, err: &Error) -> Outcome {
        let kind = err.kind();
        let failure = match &self.is_failure {
            Some(predicate) => predicate(err),
            None => kind.is_provider_failure(),
        };
        if failure {
            Outcome::Failure {
                kind,
                retry_after: err.retry_after(),
            }
        } else if kind.is_local() {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }

    /// Tells the call's observer and the user's callback about a state change.
    pub(crate) fn report(&self, key: &str, change: Change, observer: Option<&Observer>) {
        if let Some(observer) = observer {
            observer.emit(&Event::BreakerTransition {
                from: change.from,
                to: change.to,
            });
        }
        if let Some(hook) = &self.on_transition {
            hook(&Transition {
                key,
                from: change.from,
                to: change.to,
                open_for: change.open_for,
                cause: change.cause,
            });
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("policy", &self.policy)
            .field("custom_failure_predicate", &self.is_failure.is_some())
            .field("on_transition", &self.on_transition.is_some())
            .finish_non_exhaustive()
    }
}

/// One key's circuit and the settings it runs by.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) circuit: Circuit,
    pub(crate) env: Arc<Env>,
}

/// A key-typed map of circuits behind a type-erased face, so that the layer (which cannot name
/// the key type: it depends on the request body type) can inspect and sweep it.
trait ErasedRegistry: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn for_each(&self, f: &mut dyn FnMut(&Node));
    /// Forgets idle circuits; returns how many.
    fn evict_idle(&self, now_nanos: u64, idle: Duration) -> usize;
    fn len(&self) -> usize;
}

struct Registry<K> {
    map: DashMap<K, Arc<Node>, RandomKeyState>,
}

impl<K> ErasedRegistry for Registry<K>
where
    K: Eq + Hash + Send + Sync + 'static,
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn for_each(&self, f: &mut dyn FnMut(&Node)) {
        for entry in self.map.iter() {
            f(entry.value());
        }
    }

    fn evict_idle(&self, now_nanos: u64, idle: Duration) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, node| !node.circuit.is_idle(now_nanos, idle));
        before.saturating_sub(self.map.len())
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The circuits of endpoints (the default key, `http::uri::Authority`), keyed by a seeded
/// 64-bit digest of the lowercased `host:port` rather than by the `Authority` itself, whose
/// `Hash` and `Eq` go byte by byte ignoring case: a lookup hashes eight bytes at a time and
/// compares numbers, then checks the circuit's name against the endpoint (a `memcmp` when the
/// case matches, which it does for every call after the first in practice).
///
/// Two endpoints whose digests collide (2^-64 for a pair, with a seed drawn per layer) still get
/// a circuit each: the first keeps its place in `map`, the others live in `collided`, keyed by
/// their lowercased name, and are found there whenever the digest's place in `map` holds another
/// endpoint or none.
struct Endpoints {
    digest: EndpointDigest,
    map: DashMap<u64, Arc<Node>, BuildHasherDefault<DigestHasher>>,
    collided: DashMap<Box<str>, Arc<Node>, RandomKeyState>,
}

impl Endpoints {
    fn new(digest: EndpointDigest) -> Self {
        Endpoints {
            digest,
            map: DashMap::default(),
            collided: DashMap::with_capacity_and_hasher_and_shard_amount(
                0,
                RandomKeyState::default(),
                // Almost always empty: the fewest shards dashmap allows.
                2,
            ),
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(&Node)) {
        for entry in self.map.iter() {
            f(entry.value());
        }
        for entry in self.collided.iter() {
            f(entry.value());
        }
    }

    fn evict_idle(&self, now_nanos: u64, idle: Duration) -> usize {
        let before = self.len();
        self.map
            .retain(|_, node| !node.circuit.is_idle(now_nanos, idle));
        self.collided
            .retain(|_, node| !node.circuit.is_idle(now_nanos, idle));
        before.saturating_sub(self.len())
    }

    fn len(&self) -> usize {
        self.map.len() + self.collided.len()
    }
}

/// Whether `node` is the circuit of `endpoint` (`Authority` equality: ASCII case ignored).
#[inline]
fn is_circuit_of(node: &Node, endpoint: &str) -> bool {
    let name = node.circuit.key();
    name.as_bytes() == endpoint.as_bytes() || name.eq_ignore_ascii_case(endpoint)
}

/// How many distinct key types one layer serves (one in practice: the key type only varies if
/// a custom extractor gives different keys for different request body types).
const KEY_TYPES: usize = 4;

/// The state shared by a layer, every service it builds and every clone of those.
pub(crate) struct Shared {
    pub(crate) env: Arc<Env>,
    unkeyed: Unkeyed,
    unkeyed_node: OnceLock<Arc<Node>>,
    registries: [OnceLock<Box<dyn ErasedRegistry>>; KEY_TYPES],
    endpoints: OnceLock<Endpoints>,
    next_sweep_ms: AtomicU64,
}

impl Shared {
    pub(crate) fn new(env: Env, unkeyed: Unkeyed) -> Shared {
        let first_sweep = (env.policy.idle.as_millis() as u64).max(1);
        Shared {
            env: Arc::new(env),
            unkeyed,
            unkeyed_node: OnceLock::new(),
            registries: Default::default(),
            endpoints: OnceLock::new(),
            next_sweep_ms: AtomicU64::new(first_sweep),
        }
    }

    /// The circuit for `key`, created on first sight. The common path is one map read.
    #[inline]
    pub(crate) fn node<K>(&self, key: K) -> Arc<Node>
    where
        K: Eq + Hash + Send + Sync + DescribeKey + 'static,
    {
        // Endpoints have a registry of their own, keyed by digest (see `Endpoints`). The type
        // test is decided at compile time.
        if let Some(endpoint) = (&key as &dyn Any).downcast_ref::<Authority>() {
            return self.endpoint_node(endpoint.as_str());
        }
        let registry = self.registry::<K>();
        if let Some(node) = registry.map.get(&key) {
            return Arc::clone(node.value());
        }
        self.insert(registry, key)
    }

    #[cold]
    fn insert<K>(&self, registry: &Registry<K>, key: K) -> Arc<Node>
    where
        K: Eq + Hash + Send + Sync + DescribeKey + 'static,
    {
        let now = self.env.now_nanos();
        self.sweep_if_due(now);
        match registry.map.entry(key) {
            dashmap::Entry::Occupied(entry) => Arc::clone(entry.get()),
            dashmap::Entry::Vacant(entry) => {
                let name: Arc<str> = entry.key().describe().into();
                let node = Arc::new(self.new_node(name, now));
                entry.insert(Arc::clone(&node));
                node
            }
        }
    }

    /// The circuit of the endpoint `host:port` (ASCII case ignored, as `Authority` compares),
    /// created on first sight. The common path is one digest and one map read.
    #[inline]
    pub(crate) fn endpoint_node(&self, endpoint: &str) -> Arc<Node> {
        let endpoints = self.endpoints();
        let digest = endpoints.digest.of(endpoint.as_bytes());
        self.endpoint_node_with(endpoints, digest, endpoint)
    }

    /// [`Shared::endpoint_node`] for a URI's authority, or `None` if it has user-info (an `@`),
    /// which the caller strips first.
    #[inline]
    pub(crate) fn authority_node(&self, authority: &str) -> Option<Arc<Node>> {
        let endpoints = self.endpoints();
        let digest = endpoints.digest.of_without_at(authority.as_bytes())?;
        Some(self.endpoint_node_with(endpoints, digest, authority))
    }

    #[inline]
    fn endpoints(&self) -> &Endpoints {
        self.endpoints
            .get_or_init(|| Endpoints::new(EndpointDigest::random()))
    }

    #[inline]
    fn endpoint_node_with(&self, endpoints: &Endpoints, digest: u64, endpoint: &str) -> Arc<Node> {
        if let Some(node) = endpoints.map.get(&digest)
            && is_circuit_of(&node, endpoint)
        {
            return Arc::clone(node.value());
        }
        self.insert_endpoint(endpoints, digest, endpoint)
    }

    #[cold]
    fn insert_endpoint(&self, endpoints: &Endpoints, digest: u64, endpoint: &str) -> Arc<Node> {
        let now = self.env.now_nanos();
        self.sweep_if_due(now);
        // The entry holds the digest's shard locked: every endpoint with this digest is
        // created or found under the same lock, so none gets two circuits.
        match endpoints.map.entry(digest) {
            dashmap::Entry::Occupied(entry) if is_circuit_of(entry.get(), endpoint) => {
                Arc::clone(entry.get())
            }
            dashmap::Entry::Occupied(_entry) => self.collided_node(endpoints, endpoint, now),
            dashmap::Entry::Vacant(entry) => {
                if !endpoints.collided.is_empty()
                    && let Some(node) = endpoints
                        .collided
                        .get(endpoint.to_ascii_lowercase().as_str())
                {
                    // Its digest's place was freed by evicting the endpoint that held it.
                    return Arc::clone(node.value());
                }
                let node = Arc::new(self.new_node(endpoint.into(), now));
                entry.insert(Arc::clone(&node));
                node
            }
        }
    }

    /// The circuit of an endpoint whose digest's place holds another endpoint's.
    #[cold]
    fn collided_node(&self, endpoints: &Endpoints, endpoint: &str, now: u64) -> Arc<Node> {
        let key: Box<str> = endpoint.to_ascii_lowercase().into();
        Arc::clone(
            endpoints
                .collided
                .entry(key)
                .or_insert_with(|| Arc::new(self.new_node(endpoint.into(), now)))
                .value(),
        )
    }

    fn new_node(&self, name: Arc<str>, now: u64) -> Node {
        Node {
            circuit: Circuit::new(&self.env.policy, name, now),
            env: Arc::clone(&self.env),
        }
    }

    /// The circuit for requests without a key, or `None` when they bypass the breaker.
    pub(crate) fn unkeyed_node(&self) -> Option<Arc<Node>> {
        match self.unkeyed {
            Unkeyed::Bypass => None,
            Unkeyed::Shared => Some(Arc::clone(self.unkeyed_node.get_or_init(|| {
                Arc::new(self.new_node("(no key)".into(), self.env.now_nanos()))
            }))),
        }
    }

    fn registry<K>(&self) -> &Registry<K>
    where
        K: Eq + Hash + Send + Sync + 'static,
    {
        for slot in &self.registries {
            let registry = slot.get_or_init(|| {
                Box::new(Registry::<K> {
                    map: DashMap::with_hasher(RandomKeyState::default()),
                })
            });
            if let Some(registry) = registry.as_any().downcast_ref::<Registry<K>>() {
                return registry;
            }
        }
        panic!(
            "towline-breaker: one BreakerLayer used with more than {KEY_TYPES} key types; \
             build one layer per key extractor"
        )
    }

    /// Sweeps idle circuits when a sweep is due. Runs only when a new key arrives, so the
    /// number of live circuits stays bounded by the keys seen within about two idle periods
    /// at no cost to calls on known keys.
    fn sweep_if_due(&self, now_nanos: u64) {
        let now_ms = now_nanos / 1_000_000;
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms.saturating_add((self.env.policy.idle.as_millis() as u64).max(1));
        if self
            .next_sweep_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.evict_idle_at(now_nanos);
        }
    }

    pub(crate) fn evict_idle_at(&self, now_nanos: u64) -> usize {
        let idle = self.env.policy.idle;
        let endpoints = self
            .endpoints
            .get()
            .map_or(0, |e| e.evict_idle(now_nanos, idle));
        let keyed: usize = self
            .registries
            .iter()
            .filter_map(OnceLock::get)
            .map(|r| r.evict_idle(now_nanos, idle))
            .sum();
        endpoints + keyed
    }

    /// Visits every live circuit, including the one for requests without a key.
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(&Node)) {
        if let Some(node) = self.unkeyed_node.get() {
            f(node);
        }
        if let Some(endpoints) = self.endpoints.get() {
            endpoints.for_each(f);
        }
        for registry in self.registries.iter().filter_map(OnceLock::get) {
            registry.for_each(f);
        }
    }

    pub(crate) fn len(&self) -> usize {
        let keyed: usize = self
            .registries
            .iter()
            .filter_map(OnceLock::get)
            .map(|r| r.len())
            .sum();
        let endpoints = self.endpoints.get().map_or(0, Endpoints::len);
        keyed + endpoints + usize::from(self.unkeyed_node.get().is_some())
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("env", &self.env)
            .field("unkeyed", &self.unkeyed)
            .field("circuits", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::Stage;
    use towline_core::{Clock, FakeClock};

    fn shared_with_colliding_digests(clock: &FakeClock) -> Shared {
        let clock = clock.clone();
        let env = Env::new(
            Policy::for_tests(),
            Box::new(move || clock.now()),
            None,
            None,
        );
        let shared = Shared::new(env, Unkeyed::Shared);
        assert!(
            shared
                .endpoints
                .set(Endpoints::new(EndpointDigest::colliding()))
                .is_ok()
        );
        shared
    }

    #[test]
    fn endpoints_ignore_case_and_colliding_digests_keep_circuits_apart() {
        let clock = FakeClock::new();
        let shared = shared_with_colliding_digests(&clock);
        let a = shared.endpoint_node("a.example");
        let b = shared.endpoint_node("b.example:8443");
        assert!(
            !Arc::ptr_eq(&a, &b),
            "one digest, two endpoints, two circuits"
        );
        assert!(Arc::ptr_eq(&a, &shared.endpoint_node("A.Example")));
        assert!(Arc::ptr_eq(&b, &shared.endpoint_node("B.EXAMPLE:8443")));
        assert!(Arc::ptr_eq(&b, &shared.endpoint_node("b.example:8443")));
        // A key extractor that returns `Authority` finds the same circuits.
        let parsed: Authority = "A.EXAMPLE".parse().unwrap();
        assert!(Arc::ptr_eq(&a, &shared.node(parsed)));
        assert_eq!(shared.len(), 2);
        let mut names = Vec::new();
        shared.for_each(&mut |node| names.push(node.circuit.key().to_string()));
        names.sort();
        assert_eq!(names, ["a.example", "b.example:8443"]);

        // The endpoint holding the digest's place goes idle and is evicted; the collided one
        // stays in use and keeps its circuit.
        clock.advance(Duration::from_secs(50));
        let policy = Policy::for_tests();
        let now = shared.env.now_nanos();
        b.circuit
            .complete(&policy, 0, false, Outcome::Success, Stage::Whole, now);
        clock.advance(Duration::from_secs(20));
        assert_eq!(shared.evict_idle_at(shared.env.now_nanos()), 1);
        assert!(Arc::ptr_eq(&b, &shared.endpoint_node("b.example:8443")));
        let a_again = shared.endpoint_node("a.example");
        assert!(!Arc::ptr_eq(&a, &a_again), "a new circuit after eviction");
        assert!(Arc::ptr_eq(&a_again, &shared.endpoint_node("a.example")));
        assert!(Arc::ptr_eq(&b, &shared.endpoint_node("b.example:8443")));
        assert_eq!(shared.len(), 2);

        clock.advance(Duration::from_secs(120));
        assert_eq!(shared.evict_idle_at(shared.env.now_nanos()), 2);
        assert_eq!(shared.len(), 0);
    }
}
