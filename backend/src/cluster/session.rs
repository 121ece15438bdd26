//! A replica's session (cluster mode on DynamoDB): one id per run of heartbeats that arrived in
//! time. Every lease taken under a session lives while it does, so renewing all of a
//! replica's leases is one heartbeat write; a heartbeat that comes too late ends the session,
//! and with it every lease taken under it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// This replica's session as it knows it.
pub struct Session {
    state: Mutex<State>,
    ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
struct State {
    id: u64,
    /// Whether a heartbeat was written under `id` (the next must then find it alive).
    written: bool,
    /// Until when this replica may act on leases of `id`: the last heartbeat's send time plus
    /// the TTL minus a safety margin (request latency and clock skew).
    valid_until: Option<Instant>,
}

/// What the next heartbeat writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub session: u64,
    /// `true`: the record must still hold this session, alive (a renewal); `false`: a new
    /// session's first write, unconditional.
    pub renewal: bool,
}

impl Session {
    pub fn new(ttl: Duration) -> Session {
        Session {
            state: Mutex::new(State {
                id: new_id(),
                written: false,
                valid_until: None,
            }),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("session lock")
    }

    /// How long before the stored expiry this replica stops acting: a fifth of the TTL.
    pub fn margin(&self) -> Duration {
        self.ttl / 5
    }

    /// What to write next.
    pub fn beat(&self) -> Beat {
        let s = self.lock();
        Beat {
            session: s.id,
            renewal: s.written,
        }
    }

    /// The renewal was refused (the session ran out, or another process took this replica's
    /// id): the next heartbeat starts a new session, and leases of the old one are gone.
    pub fn lapsed(&self) -> Beat {
        let mut s = self.lock();
        *s = State {
            id: new_id(),
            written: false,
            valid_until: None,
        };
        Beat {
            session: s.id,
            renewal: false,
        }
    }

    /// `beat` was written; it had been sent at `sent`.
    pub fn written(&self, beat: Beat, sent: Instant) {
        let mut s = self.lock();
        if s.id == beat.session {
            s.written = true;
            s.valid_until = Some(sent + self.ttl - self.margin());
        }
    }

    /// The session and until when it may be acted on, if it is live now.
    pub fn live(&self) -> Option<(u64, Instant)> {
        let s = self.lock();
        let until = s.valid_until?;
        (Instant::now() < until).then_some((s.id, until))
    }
}

/// A random non-zero id (0 marks leases without a session).
fn new_id() -> u64 {
    rand::random::<u64>().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_is_live_from_its_first_write_until_the_ttl_minus_the_margin() {
        let session = Session::new(Duration::from_secs(30));
        let first = session.beat();
        assert!(
            !first.renewal,
            "a new session's first write is unconditional"
        );
        assert!(session.live().is_none(), "nothing written yet");
        session.written(first, Instant::now());
        let (id, until) = session.live().unwrap();
        assert_eq!(id, first.session);
        assert_eq!(until, Instant::now() + Duration::from_secs(24));
        assert!(session.beat().renewal, "later writes renew");
        tokio::time::sleep(Duration::from_secs(24)).await;
        assert!(session.live().is_none(), "not renewed in time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapsed_session_is_replaced_and_late_answers_of_the_old_one_are_ignored() {
        let session = Session::new(Duration::from_secs(30));
        let old = session.beat();
        let fresh = session.lapsed();
        assert_ne!(old.session, fresh.session);
        assert!(!fresh.renewal);
        session.written(old, Instant::now());
        assert!(
            session.live().is_none(),
            "an old session's write does not revive it"
        );
        session.written(fresh, Instant::now());
        assert_eq!(session.live().unwrap().0, fresh.session);
    }
}
