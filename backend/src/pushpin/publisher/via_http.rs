//! [`HttpPublisher`]: Pushpin's HTTP API (`POST <base>/publish/`), the configured Pushpins in
//! turn, the other replicas' through a bounded queue and a task each.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{count_pushpins, Health, PublishError, Publisher};
use crate::pushpin::grip::PublishItem;

/// Publishes a remote Pushpin has not taken yet; more are dropped (and counted).
const REMOTE_QUEUE: usize = 1000;
const REMOTE_TIMEOUT: Duration = Duration::from_secs(5);

/// One remote Pushpin's queue; its task stops when this is dropped.
struct Remote {
    queue: mpsc::Sender<Bytes>,
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
        let (queue, mut rx) = mpsc::channel::<Bytes>(REMOTE_QUEUE);
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
                    .header(CONTENT_TYPE, "application/json")
                    .body(body)
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
        // Serialized once for every target (cheap clones of the same bytes).
        #[derive(serde::Serialize)]
        struct Body<'a> {
            items: &'a [PublishItem],
        }
        let body = Bytes::from(serde_json::to_vec(&Body { items }).expect("items serialize"));
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
            let sent = self
                .client
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send();
            let outcome = match sent.await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pushpin::grip::Transports;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn item(n: usize) -> PublishItem {
        PublishItem::message("ch", Transports::WebSocket, format!("{{\"n\":{n}}}"), None)
    }

    type Bodies = Arc<Mutex<Vec<serde_json::Value>>>;

    /// A local stand-in for Pushpin's publish API: it records every body and answers 200, or
    /// (`answers = false`) reads nothing and never answers.
    async fn pushpin(answers: bool) -> (String, Bodies) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Bodies::default();
        let seen = bodies.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                if !answers {
                    held.push(s);
                    continue;
                }
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body = loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break body.to_string();
                        }
                    };
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_str(&body).unwrap());
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        (base, bodies)
    }

    fn numbers(bodies: &Bodies) -> Vec<u64> {
        let bodies = bodies.lock().unwrap();
        bodies
            .iter()
            .map(|b| {
                let content = b["items"][0]["formats"]["ws-message"]["content"]
                    .as_str()
                    .unwrap();
                serde_json::from_str::<serde_json::Value>(content).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn remote_pushpins_get_every_publish_in_order_and_a_silent_one_holds_nothing_up() {
        let (own, own_bodies) = pushpin(true).await;
        let (remote, remote_bodies) = pushpin(true).await;
        let (silent, _) = pushpin(false).await;
        let publisher = HttpPublisher::new(&[own]);
        publisher.set_remotes(&[remote.clone(), silent]);
        // Each publish waits for the configured Pushpin only: had one waited for the silent
        // one, it would have taken its 5 s timeout.
        let three = async {
            for n in 0..3 {
                publisher.publish(&[item(n)]).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(4), three)
            .await
            .expect("publishes never wait for another replica's Pushpin");
        assert_eq!(numbers(&own_bodies), vec![0, 1, 2]);
        for _ in 0..100 {
            if remote_bodies.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(numbers(&remote_bodies), vec![0, 1, 2], "in order");

        publisher.set_remotes(&[]);
        publisher.publish(&[item(3)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            remote_bodies.lock().unwrap().len(),
            3,
            "a removed Pushpin gets nothing more"
        );
    }
}
