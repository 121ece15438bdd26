//! Pushpin's stats socket: parses `sub` reports into [`SubReport`]s (a type demand owns, so
//! demand never looks at the socket) and feeds them to [`Demand`].
//!
//! Pushpin publishes one frame per event, `"<type> J<json>"` when `stats_format=json`.
//! Only `sub` events matter here: they say, per channel and per Pushpin instance, whether it has
//! subscribers, and are refreshed before their `ttl` runs out.
//!
//! One SUB socket reads the configured Pushpins and, in cluster mode, the ones the other
//! replicas advertise: [`RemoteStats`] tells the reader's thread which to connect and
//! disconnect, so every replica sees the demand of every Pushpin.

use std::collections::BTreeSet;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::demand::Demand;
pub use crate::demand::SubReport;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StatsError {
    #[error("stats frame has no type")]
    NoType,
    #[error("stats frame uses tnetstring encoding; set stats_format=json in pushpin.conf")]
    Tnetstring,
    #[error("stats frame is not valid: {0}")]
    Invalid(String),
}

/// Parses one stats frame; `Ok(None)` for event types other than `sub`.
pub fn parse_frame(frame: &[u8]) -> Result<Option<SubReport>, StatsError> {
    let space = frame
        .iter()
        .position(|&b| b == b' ')
        .ok_or(StatsError::NoType)?;
    if &frame[..space] != b"sub" {
        return Ok(None);
    }
    match frame.get(space + 1) {
        Some(b'J') => serde_json::from_slice(&frame[space + 2..])
            .map(Some)
            .map_err(|e| StatsError::Invalid(e.to_string())),
        Some(b'T') => Err(StatsError::Tnetstring),
        _ => Err(StatsError::Invalid("unknown encoding".into())),
    }
}

/// The stats sockets of the other replicas' Pushpins, for the reader to read beside the
/// configured ones (each call replaces the previous set).
#[derive(Clone)]
pub struct RemoteStats(std_mpsc::Sender<Vec<String>>);

/// The reader's end of [`RemoteStats`].
pub struct RemoteStatsReceiver(std_mpsc::Receiver<Vec<String>>);

/// A way to change the reader's remote sockets, and the reader's end of it.
pub fn remote_stats() -> (RemoteStats, RemoteStatsReceiver) {
    let (tx, rx) = std_mpsc::channel();
    (RemoteStats(tx), RemoteStatsReceiver(rx))
}

impl RemoteStats {
    pub fn set(&self, specs: Vec<String>) {
        let _ = self.0.send(specs); // The reader stopped: nothing left to tell.
    }
}

/// Reads every configured stats socket (and the remote ones `remotes` names) on a blocking
/// thread until `shutdown`.
pub fn spawn_reader(
    specs: Vec<String>,
    remotes: RemoteStatsReceiver,
    demand: Arc<Demand>,
    shutdown: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("pushpin-stats".into())
        .spawn(move || {
            if let Err(e) = read_loop(&specs, &remotes, &demand, &shutdown) {
                tracing::error!(error = %e, "stats socket failed");
            }
        })
        .expect("spawn stats thread")
}

/// [`spawn_reader`] as a task: it ends at `shutdown`, or early when the socket fails (and
/// panics if the thread did), so a supervisor sees a reader that stopped.
pub async fn run_reader(
    specs: Vec<String>,
    remotes: RemoteStatsReceiver,
    demand: Arc<Demand>,
    shutdown: CancellationToken,
) {
    let thread = spawn_reader(specs, remotes, demand, shutdown);
    if let Ok(Err(panic)) = tokio::task::spawn_blocking(move || thread.join()).await {
        std::panic::resume_unwind(panic);
    }
}

/// Connects the SUB socket to the remote specs last asked for and disconnects the others; a
/// spec that cannot be connected is left out (and tried again at the next change).
fn follow_remotes(
    socket: &zmq::Socket,
    remotes: &RemoteStatsReceiver,
    connected: &mut BTreeSet<String>,
) {
    let Some(wanted) = remotes.0.try_iter().last() else {
        return;
    };
    let wanted: BTreeSet<String> = wanted.into_iter().collect();
    for spec in connected.difference(&wanted) {
        match socket.disconnect(spec) {
            Ok(()) => {
                tracing::info!(spec = %spec, "no longer reading another replica's Pushpin stats")
            }
            Err(e) => tracing::debug!(spec = %spec, error = %e, "cannot disconnect a stats socket"),
        }
    }
    connected.retain(|s| wanted.contains(s));
    for spec in wanted.difference(&connected.clone()) {
        match socket.connect(spec) {
            Ok(()) => {
                tracing::info!(spec = %spec, "reading another replica's Pushpin stats");
                connected.insert(spec.clone());
            }
            Err(e) => {
                tracing::warn!(spec = %spec, error = %e, "cannot read another replica's Pushpin stats")
            }
        }
    }
}

fn read_loop(
    specs: &[String],
    remotes: &RemoteStatsReceiver,
    demand: &Demand,
    shutdown: &CancellationToken,
) -> Result<(), zmq::Error> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::SUB)?;
    socket.set_linger(0)?;
    socket.set_subscribe(b"sub ")?;
    socket.set_rcvtimeo(200)?;
    for spec in specs {
        socket.connect(spec)?;
        tracing::info!(spec = %spec, "reading Pushpin stats");
    }
    let mut connected = BTreeSet::new();
    let mut warned = false;
    while !shutdown.is_cancelled() {
        follow_remotes(&socket, remotes, &mut connected);
        let frame = match socket.recv_bytes(0) {
            Ok(f) => f,
            Err(zmq::Error::EAGAIN) => continue,
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e),
        };
        match parse_frame(&frame) {
            Ok(Some(report)) => demand.apply_report(&report, tokio::time::Instant::now()),
            Ok(None) => {}
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "ignoring unreadable stats frame (reported once)");
            }
            Err(_) => {}
        }
    }
    std::thread::sleep(Duration::from_millis(1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_sub_reports() {
        let r = parse_frame(
            br#"sub J{"channel":"st","from":"h_1","mode":"ws","subscribers":1,"ttl":60}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.channel, "st");
        assert_eq!(r.mode, "ws");
        assert_eq!(r.subscribers, Some(1));
        assert!(!r.unavailable);
        let gone =
            parse_frame(br#"sub J{"channel":"st","from":"h_1","mode":"ws","unavailable":true}"#)
                .unwrap()
                .unwrap();
        assert!(gone.unavailable);
    }

    #[test]
    fn ignores_other_types_and_reports_bad_frames() {
        assert_eq!(parse_frame(br#"conn J{"id":"x"}"#), Ok(None));
        assert_eq!(parse_frame(b"sub T3:abc,"), Err(StatsError::Tnetstring));
        assert_eq!(parse_frame(b"nospace"), Err(StatsError::NoType));
        assert!(matches!(
            parse_frame(b"sub J{"),
            Err(StatsError::Invalid(_))
        ));
    }

    /// Sends `channel`'s sub report on `pub_socket` until `demand` has it (the SUB side joins
    /// late) or `within` runs out; whether it arrived.
    fn report_until_seen(
        pub_socket: &zmq::Socket,
        channel: &str,
        demand: &Demand,
        within: Duration,
    ) -> bool {
        let id = crate::channel::ChannelId::parse(channel).unwrap();
        let frame = format!(
            r#"sub J{{"channel":"{channel}","from":"h_1","mode":"ws","subscribers":1,"ttl":60}}"#
        );
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            pub_socket.send(frame.as_bytes(), 0).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            if demand.is_active(&id, tokio::time::Instant::now()) {
                return true;
            }
        }
        false
    }

    #[test]
    fn reads_the_remote_pushpins_it_is_told_and_stops_reading_removed_ones() {
        let ctx = zmq::Context::new();
        let pushpin = ctx.socket(zmq::PUB).unwrap();
        pushpin.bind("tcp://127.0.0.1:*").unwrap();
        let spec = pushpin.get_last_endpoint().unwrap().unwrap();
        let demand = Arc::new(Demand::new(Duration::from_secs(60)));
        let (remotes, receiver) = remote_stats();
        let shutdown = CancellationToken::new();
        let reader = spawn_reader(Vec::new(), receiver, demand.clone(), shutdown.clone());
        let (wait, short) = (Duration::from_secs(10), Duration::from_secs(1));
        assert!(
            !report_until_seen(&pushpin, "before", &demand, short),
            "not read before it is named"
        );
        remotes.set(vec![spec.clone()]);
        assert!(report_until_seen(&pushpin, "named", &demand, wait));
        remotes.set(Vec::new());
        std::thread::sleep(Duration::from_millis(500)); // The reader's next turn.
        assert!(
            !report_until_seen(&pushpin, "removed", &demand, short),
            "no longer read once removed"
        );
        remotes.set(vec![spec]);
        assert!(report_until_seen(&pushpin, "again", &demand, wait));
        shutdown.cancel();
        reader.join().unwrap();
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_frame(&frame);
        }
    }
}
