//! Publishing to Pushpin: ZeroMQ PUSH (default) or HTTP `POST /publish`.
//!
//! Several Pushpin instances get one PUSH socket each: a shared PUSH socket would round-robin
//! items between instances instead of sending every item to all of them.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::pushpin::grip::PublishItem;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("ZeroMQ publish to {spec} failed: {source}")]
    Zmq {
        spec: String,
        #[source]
        source: zmq::Error,
    },
    #[error("HTTP publish to {url} failed: {detail}")]
    Http { url: String, detail: String },
    #[error("the publisher has shut down")]
    Closed,
}

/// Sends GRIP items to every Pushpin.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes items in order; returns once every Pushpin accepted them (or one failed).
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError>;
}

type Job = (Vec<Vec<u8>>, oneshot::Sender<Result<(), PublishError>>);

/// PUSH sockets owned by one thread (ZeroMQ sockets are not thread-safe).
pub struct ZmqPublisher {
    jobs: std_mpsc::Sender<Job>,
}

impl ZmqPublisher {
    /// Connects one PUSH socket per spec, e.g. `tcp://127.0.0.1:5560`.
    pub fn connect(specs: &[String]) -> Result<ZmqPublisher, PublishError> {
        let ctx = zmq::Context::new();
        let mut sockets = Vec::new();
        for spec in specs {
            let zerr = |source| PublishError::Zmq {
                spec: spec.clone(),
                source,
            };
            let s = ctx.socket(zmq::PUSH).map_err(zerr)?;
            s.set_linger(1000).map_err(zerr)?;
            // PUSH queues while Pushpin is away; past the high-water mark a send fails after
            // this timeout instead of blocking the publisher forever.
            s.set_sndhwm(10_000).map_err(zerr)?;
            s.set_sndtimeo(2000).map_err(zerr)?;
            s.connect(spec).map_err(zerr)?;
            sockets.push((spec.clone(), s));
        }
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("zmq-publish".into())
            .spawn(move || {
                let _ctx = ctx;
                for (frames, done) in rx {
                    let mut result = Ok(());
                    'out: for (spec, socket) in &sockets {
                        for frame in &frames {
                            if let Err(source) = socket.send(frame.as_slice(), 0) {
                                result = Err(PublishError::Zmq {
                                    spec: spec.clone(),
                                    source,
                                });
                                break 'out;
                            }
                        }
                    }
                    let _ = done.send(result);
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
            .send((frames, tx))
            .map_err(|_| PublishError::Closed)?;
        rx.await.map_err(|_| PublishError::Closed)?
    }
}

/// Publishes through Pushpin's HTTP API (`POST <base>/publish/`).
pub struct HttpPublisher {
    client: reqwest::Client,
    urls: Vec<String>,
}

impl HttpPublisher {
    pub fn new(bases: &[String]) -> HttpPublisher {
        HttpPublisher {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client"),
            urls: bases
                .iter()
                .map(|b| format!("{}/publish/", b.trim_end_matches('/')))
                .collect(),
        }
    }
}

#[async_trait]
impl Publisher for HttpPublisher {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let body = serde_json::json!({ "items": items });
        for url in &self.urls {
            let err = |detail: String| PublishError::Http {
                url: url.clone(),
                detail,
            };
            let resp = self
                .client
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| err(e.to_string()))?;
            if !resp.status().is_success() {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                return Err(err(format!("{status}: {}", text.trim())));
            }
        }
        Ok(())
    }
}

/// Counts published items and failed publishes in the metrics.
pub struct Metered<P>(pub P);

#[async_trait]
impl<P: Publisher> Publisher for Metered<P> {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let result = self.0.publish(items).await;
        let metrics = crate::metrics::get();
        match &result {
            Ok(()) => metrics.published.inc_by(items.len() as u64),
            Err(_) => metrics.publish_failures.inc(),
        }
        result
    }
}
