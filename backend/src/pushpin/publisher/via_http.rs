//! [`HttpPublisher`]: Pushpin's HTTP API (`POST <base>/publish/`), the configured Pushpins in
//! turn, the other replicas' through a bounded queue and a task each.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{count_pushpins, Health, PublishError, Publisher};
use crate::pushpin::grip::PublishItem;

/// Publishes a remote Pushpin has not taken yet; more are dropped (and counted).
const REMOTE_QUEUE: usize = 1000;
const REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// One remote Pushpin's queue; its task stops when this is dropped.
struct Remote {
    queue: mpsc::Sender<Arc<serde_json::Value>>,
    stop: CancellationToken,
    health: Health,
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Publishes through Pushpin's HTTP API.
pub struct HttpPublisher {
    client: reqwest::Client,
    urls: Vec<String>,
    /// Configured targets' health, by URL.
    health: Mutex<BTreeMap<String, Health>>,
    remotes: Mutex<BTreeMap<String, Remote>>,
}

fn publish_url(base: &str) -> String {
    format!("{}/publish/", base.trim_end_matches('/'))
}

impl HttpPublisher {
    pub fn new(bases: &[String]) -> HttpPublisher {
        count_pushpins(bases.len());
        HttpPublisher {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client"),
            urls: bases.iter().map(|b| publish_url(b)).collect(),
            health: Mutex::default(),
            remotes: Mutex::default(),
        }
    }

    /// The task that posts one remote Pushpin's queue in order.
    fn spawn_remote(&self, url: String) -> Option<Remote> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (queue, mut rx) = mpsc::channel::<Arc<serde_json::Value>>(REMOTE_QUEUE);
        let stop = CancellationToken::new();
        let (client, done) = (self.client.clone(), stop.clone());
        runtime.spawn(async move {
            let mut health = Health::default();
            loop {
                let body = tokio::select! {
                    _ = done.cancelled() => return,
                    body = rx.recv() => match body { Some(b) => b, None => return },
                };
                let sent = client
                    .post(&url)
                    .timeout(REMOTE_TIMEOUT)
                    .json(&*body)
                    .send();
                let outcome = tokio::select! {
                    _ = done.cancelled() => return,
                    r = sent => r.map_err(|e| e.to_string()).and_then(|r| match r.status() {
                        s if s.is_success() => Ok(()),
                        s => Err(format!("answered {s}")),
                    }),
                };
                match outcome {
                    Ok(()) => health.succeeded(&url),
                    Err(e) => health.failed(&url, &e),
                }
            }
        });
        Some(Remote {
            queue,
            stop,
            health: Health::default(),
        })
    }
}

#[async_trait]
impl Publisher for HttpPublisher {
    async fn publish(&self, items: &[PublishItem]) -> Result<(), PublishError> {
        let body = Arc::new(serde_json::json!({ "items": items }));
        {
            let mut remotes = self.remotes.lock().expect("remotes lock");
            for (url, r) in remotes.iter_mut() {
                match r.queue.try_send(body.clone()) {
                    Ok(()) => r.health.succeeded(url),
                    Err(_) => r.health.failed(url, &"its queue is full"),
                }
            }
        }
        let mut result = Ok(());
        for url in &self.urls {
            let outcome = match self.client.post(url).json(&*body).send().await {
                Err(e) => Err(e.to_string()),
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    Err(format!("{status}: {}", text.trim()))
                }
            };
            let mut health = self.health.lock().expect("health lock");
            let h = health.entry(url.clone()).or_default();
            match outcome {
                Ok(()) => h.succeeded(url),
                Err(detail) => {
                    h.failed(url, &detail);
                    if result.is_ok() {
                        result = Err(PublishError::Http {
                            url: url.clone(),
                            detail,
                        });
                    }
                }
            }
        }
        result
    }

    fn set_remotes(&self, targets: &[String]) {
        let urls: Vec<String> = targets.iter().map(|b| publish_url(b)).collect();
        let mut remotes = self.remotes.lock().expect("remotes lock");
        remotes.retain(|url, _| urls.contains(url)); // Dropping one stops its task.
        for url in urls {
            if remotes.contains_key(&url) {
                continue;
            }
            match self.spawn_remote(url.clone()) {
                Some(r) => {
                    tracing::info!(url = %url, "publishing to another replica's Pushpin");
                    remotes.insert(url, r);
                }
                None => {
                    tracing::warn!(url = %url, "no runtime to publish to another replica's Pushpin from")
                }
            }
        }
        count_pushpins(self.urls.len() + remotes.len());
    }
}
