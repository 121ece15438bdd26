//! [`ZmqPublisher`]: one PUSH socket per Pushpin, owned by one thread (ZeroMQ sockets are not
//! thread-safe), the configured ones blocking up to a timeout, the other replicas' ones never.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{count_pushpins, Health, PublishError, Publisher};
use crate::pushpin::grip::PublishItem;

/// Items queued per socket while its Pushpin is away or slow; past it a configured target's
/// send waits up to `SEND_TIMEOUT_MS` and fails, another replica's is dropped at once.
const HWM: i32 = 10_000;
const SEND_TIMEOUT_MS: i32 = 2000;

enum Job {
    Publish(Vec<Vec<u8>>, oneshot::Sender<Result<(), PublishError>>),
    Remotes(Vec<String>),
}

/// A PUSH socket to one Pushpin.
struct Target {
    spec: String,
    socket: zmq::Socket,
    health: Health,
}

impl Target {
    fn connect(ctx: &zmq::Context, spec: &str, remote: bool) -> Result<Target, PublishError> {
        let zerr = |source| PublishError::Zmq {
            spec: spec.to_string(),
            source,
        };
        let s = ctx.socket(zmq::PUSH).map_err(zerr)?;
        // A removed remote Pushpin (its replica left) is gone: drop what is queued for it.
        s.set_linger(if remote { 0 } else { 1000 }).map_err(zerr)?;
        // PUSH queues while Pushpin is away (also before the first connection completes, so
        // nothing sent to a new Pushpin is lost while it connects).
        s.set_sndhwm(HWM).map_err(zerr)?;
        s.set_sndtimeo(SEND_TIMEOUT_MS).map_err(zerr)?;
        s.connect(spec).map_err(zerr)?;
        Ok(Target {
            spec: spec.to_string(),
            socket: s,
            health: Health::default(),
        })
    }

    /// Sends every frame (`flags` 0: wait up to the timeout; `DONTWAIT`: never wait); stops
    /// at the first refusal.
    fn send(&mut self, frames: &[Vec<u8>], flags: i32) -> Result<(), PublishError> {
        for frame in frames {
            if let Err(source) = self.socket.send(frame.as_slice(), flags) {
                self.health.failed(&self.spec, &source);
                return Err(PublishError::Zmq {
                    spec: self.spec.clone(),
                    source,
                });
            }
        }
        self.health.succeeded(&self.spec);
        Ok(())
    }
}

/// The publishing thread's state.
struct Sockets {
    ctx: zmq::Context,
    configured: Vec<Target>,
    remotes: BTreeMap<String, Target>,
}

impl Sockets {
    /// Every configured target waits for its turn (the first failure is the result); every
    /// remote one is sent to without waiting.
    fn publish(&mut self, frames: &[Vec<u8>]) -> Result<(), PublishError> {
        let mut result = Ok(());
        for t in &mut self.configured {
            if let Err(e) = t.send(frames, 0) {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        for t in self.remotes.values_mut() {
            let _ = t.send(frames, zmq::DONTWAIT);
        }
        result
    }

    fn set_remotes(&mut self, specs: Vec<String>) {
        self.remotes.retain(|spec, _| {
            let keep = specs.contains(spec);
            if !keep {
                tracing::info!(spec = %spec, "no longer publishing to another replica's Pushpin");
            }
            keep // A dropped socket closes with linger 0.
        });
        for spec in specs {
            if self.remotes.contains_key(&spec) {
                continue;
            }
            match Target::connect(&self.ctx, &spec, true) {
                Ok(t) => {
                    tracing::info!(spec = %spec, "publishing to another replica's Pushpin");
                    self.remotes.insert(spec, t);
                }
                Err(e) => {
                    crate::metrics::get().publish_failures.inc();
                    tracing::warn!(error = %e, "cannot publish to another replica's Pushpin");
                }
            }
        }
        count_pushpins(self.configured.len() + self.remotes.len());
    }
}

/// PUSH sockets owned by one thread.
pub struct ZmqPublisher {
    jobs: std_mpsc::Sender<Job>,
}

impl ZmqPublisher {
    /// Connects one PUSH socket per configured spec, e.g. `tcp://127.0.0.1:5560`.
    pub fn connect(specs: &[String]) -> Result<ZmqPublisher, PublishError> {
        let ctx = zmq::Context::new();
        let configured = specs
            .iter()
            .map(|spec| Target::connect(&ctx, spec, false))
            .collect::<Result<Vec<_>, _>>()?;
        count_pushpins(configured.len());
        let mut sockets = Sockets {
            ctx,
            configured,
            remotes: BTreeMap::new(),
        };
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("zmq-publish".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Publish(frames, done) => {
                            let _ = done.send(sockets.publish(&frames));
                        }
                        Job::Remotes(specs) => sockets.set_remotes(specs),
                    }
                }
            })
            .expect("spawn publisher thread");
        Ok(ZmqPublisher { jobs: tx })
    }
}

#[async_trait]
impl Publisher for ZmqPublisher {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let frames = items
            .iter()
            .map(|i| {
                let mut f = b"J".to_vec();
                serde_json::to_writer(&mut f, i).expect("items serialize");
                f
            })
            .collect();
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Publish(frames, tx))
            .map_err(|_| PublishError::Closed)?;
        rx.await.map_err(|_| PublishError::Closed)?
    }

    fn set_remotes(&self, targets: &[String]) {
        // Queued before any later publish, so those reach the new targets.
        let _ = self.jobs.send(Job::Remotes(targets.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pushpin::grip::Transports;

    fn item(n: usize) -> PublishItem {
        PublishItem::message("ch", Transports::WebSocket, format!("{{\"n\":{n}}}"), None)
    }

    /// A PULL socket standing in for one Pushpin: its spec and a receiver of frame counts.
    fn pushpin(ctx: &zmq::Context) -> (String, zmq::Socket) {
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.set_rcvtimeo(2000).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        (pull.get_last_endpoint().unwrap().unwrap(), pull)
    }

    fn drain(pull: &zmq::Socket, expected: usize) -> usize {
        let mut n = 0;
        while n < expected && pull.recv_bytes(0).is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn remote_pushpins_come_and_go_and_a_dead_one_never_fails_the_configured_one() {
        let ctx = zmq::Context::new();
        let (own_spec, own) = pushpin(&ctx);
        let (remote_spec, remote) = pushpin(&ctx);
        let publisher = ZmqPublisher::connect(std::slice::from_ref(&own_spec)).unwrap();
        publisher.publish(&[item(0)]).await.unwrap();
        assert_eq!(drain(&own, 1), 1);

        publisher.set_remotes(std::slice::from_ref(&remote_spec));
        publisher.publish(&[item(1), item(2)]).await.unwrap();
        assert_eq!(drain(&own, 2), 2);
        assert_eq!(drain(&remote, 2), 2, "the remote Pushpin gets what follows");

        // A remote Pushpin nobody listens on: its queue fills and it drops, while publishing
        // to the configured one neither waits nor fails.
        let dead = {
            let (spec, socket) = pushpin(&ctx);
            drop(socket);
            spec
        };
        publisher.set_remotes(&[dead]);
        let failures = crate::metrics::get().publish_failures.get();
        let batch: Vec<PublishItem> = (0..100).map(item).collect();
        let started = std::time::Instant::now();
        let batches = (HWM as usize) / 100 + 20;
        for _ in 0..batches {
            publisher
                .publish(&batch)
                .await
                .expect("configured target accepts");
            assert_eq!(drain(&own, 100), 100);
        }
        assert!(
            crate::metrics::get().publish_failures.get() > failures,
            "drops to the dead Pushpin are counted"
        );
        // Had sends waited, each of the 20 batches past the queue bound would have taken the
        // send timeout (2 s): 40 s.
        let waited = started.elapsed();
        assert!(
            waited < std::time::Duration::from_secs(20),
            "sends waited for the dead Pushpin: {waited:?}"
        );
        assert_eq!(drain(&remote, 1), 0, "a removed Pushpin gets nothing more");
    }

    #[tokio::test]
    async fn the_first_publish_to_a_new_remote_pushpin_waits_for_its_connection() {
        // A remote target's sends never wait (DONTWAIT), yet what is sent before its TCP
        // connection is up queues (the pipe exists from `connect`: ZMQ_IMMEDIATE is off) and
        // is delivered once the Pushpin listens; here it does not listen yet at all.
        let ctx = zmq::Context::new();
        let (own_spec, own) = pushpin(&ctx);
        // A free port nobody listens on yet (closed at once, unlike a ZMQ socket, whose I/O
        // thread could still accept the first connection and lose what it was sent).
        let late_spec = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("tcp://{}", probe.local_addr().unwrap())
        };
        let publisher = ZmqPublisher::connect(std::slice::from_ref(&own_spec)).unwrap();
        publisher.set_remotes(std::slice::from_ref(&late_spec));
        publisher.publish(&[item(0), item(1)]).await.unwrap();
        assert_eq!(drain(&own, 2), 2);
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.set_rcvtimeo(5000).unwrap();
        // Another process may have taken the port meanwhile: retry a moment.
        let mut bound = pull.bind(&late_spec);
        for _ in 0..50 {
            if bound.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            bound = pull.bind(&late_spec);
        }
        bound.unwrap();
        assert_eq!(drain(&pull, 2), 2, "queued until the Pushpin listened");
    }
}
