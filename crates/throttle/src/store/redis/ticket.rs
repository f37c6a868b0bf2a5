//! A waiting call's place: a slot reserved in Redis, or a place in the local fallback queue.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;

use super::remote::Remote;
use crate::store::{MemoryTicket, Ticket};

/// A waiting call's place in its key's queue, from the
/// [`RedisStore`](super::RedisStore). Dropping it gives the place back.
///
/// Through Redis, the place is a slot reserved in the key's shared bucket: the call goes when
/// its time comes (after a last check that no provider pause arrived meanwhile). A dropped
/// reservation is given back when no later call reserved after it — only then is the refund
/// exact; otherwise its slot passes unused, which can only make the fleet slower, never
/// faster. On the fallback path (Redis unreachable), the place is one in the local bucket's
/// queue, with its usual guarantees.
pub struct RedisTicket(pub(super) Place);

pub(super) enum Place {
    Reserved(Reservation),
    Local(MemoryTicket),
}

/// A slot reserved in a key's shared bucket.
pub(super) struct Reservation {
    pub(super) remote: Arc<Remote>,
    pub(super) hash: String,
    /// The bucket's `tat` right after the reservation.
    pub(super) tat: i64,
    pub(super) weight_us: u64,
    live: bool,
}

impl Reservation {
    pub(super) fn new(remote: Arc<Remote>, hash: String, tat: i64, weight_us: u64) -> Self {
        remote.reservations.fetch_add(1, Ordering::Relaxed);
        Reservation {
            remote,
            hash,
            tat,
            weight_us,
            live: true,
        }
    }

    /// The slot was used, or superseded by a later answer: nothing to give back.
    pub(super) fn settle(mut self) {
        self.live = false;
        self.remote.reservations.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        self.remote.reservations.fetch_sub(1, Ordering::Relaxed);
        // A cancelled waiter (its future was dropped): give the slot back in the background.
        // Rare, so a task is fine here; with no runtime or no Redis, the slot passes unused.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.remote.is_up() || self.weight_us == 0 {
            return;
        }
        let (remote, hash, tat, weight) = (
            Arc::clone(&self.remote),
            std::mem::take(&mut self.hash),
            self.tat,
            self.weight_us,
        );
        runtime.spawn(async move {
            let _ = remote.refund(&hash, tat, weight).await;
        });
    }
}

impl Ticket for RedisTicket {
    fn register(&self, waker: &Waker) {
        match &self.0 {
            // The reserved instant (`Admission::Wait::until`) wakes the caller.
            Place::Reserved(_) => {}
            Place::Local(ticket) => ticket.register(waker),
        }
    }
}

impl fmt::Debug for RedisTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Place::Reserved(r) => f
                .debug_struct("RedisTicket")
                .field("reserved_tat_us", &r.tat)
                .finish(),
            Place::Local(t) => f.debug_tuple("RedisTicket").field(t).finish(),
        }
    }
}
