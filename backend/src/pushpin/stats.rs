//! Pushpin's stats socket: parses `sub` reports into [`SubReport`]s (a type demand owns, so
//! demand never looks at the socket) and feeds them to [`Demand`].
//!
//! Pushpin publishes one frame per event, `"<type> J<json>"` when `stats_format=json`.
//! Only `sub` events matter here: they say, per channel and per Pushpin instance, whether it has
//! subscribers, and are refreshed before their `ttl` runs out.

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

/// Reads every configured stats socket on a blocking thread until `shutdown`.
pub fn spawn_reader(
    specs: Vec<String>,
    demand: Arc<Demand>,
    shutdown: CancellationToken,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("pushpin-stats".into())
        .spawn(move || {
            if let Err(e) = read_loop(&specs, &demand, &shutdown) {
                tracing::error!(error = %e, "stats socket failed");
            }
        })
        .expect("spawn stats thread")
}

/// [`spawn_reader`] as a task: it ends at `shutdown`, or early when the socket fails (and
/// panics if the thread did), so a supervisor sees a reader that stopped.
pub async fn run_reader(specs: Vec<String>, demand: Arc<Demand>, shutdown: CancellationToken) {
    let thread = spawn_reader(specs, demand, shutdown);
    if let Ok(Err(panic)) = tokio::task::spawn_blocking(move || thread.join()).await {
        std::panic::resume_unwind(panic);
    }
}

fn read_loop(
    specs: &[String],
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
    let mut warned = false;
    while !shutdown.is_cancelled() {
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

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_frame(&frame);
        }
    }
}
