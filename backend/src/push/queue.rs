//! The SQS queue source of push channels: one consumer per push channel with a `[queue]`, in
//! every replica (competing consumers). Each message becomes one batch with the idempotency key
//! `sqs:<message id>`, so a message delivered again after a crash is a no-op; it is deleted
//! only once its batch is committed (or replayed). A message that cannot be mapped, or that the
//! channel refuses, goes to the dead-letter queue (then is deleted); transient refusals and SQS
//! errors leave it in the queue, visible again after its visibility timeout.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageAttributeValue};
use tokio_util::sync::CancellationToken;

use crate::channel::{ChannelId, ParamSpecs};
use crate::fetcher::{Registry, SharedRegistry};
use crate::metrics;

use super::queue_map::{map_message, prefix};
use super::{Publishing, PushBatch, PushError, PushSpec, QueueSpec};

/// Characters of a message body a log line may quote.
const LOG_PREFIX_CHARS: usize = 64;
/// Longest pause after consecutive failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The shortest time between two receives that found nothing.
const MIN_EMPTY_RECEIVE: Duration = Duration::from_secs(1);
/// How often a consumer whose channel left the registry (or lost its `[queue]`) looks again.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// The names of `registry`'s push channels that read from a queue. One whose queue URL is
/// empty (`url` unset, its `url_env` variable unset) is left out with a warning: it has no
/// queue to read.
pub fn queued_channels(registry: &Registry) -> Vec<String> {
    registry
        .names()
        .filter(|name| {
            let queue = registry
                .get(name)
                .and_then(|e| e.fetcher.push())
                .and_then(|spec| spec.queue.clone());
            match queue {
                Some(q) if q.queue_url().is_empty() => {
                    tracing::warn!(
                        channel = name,
                        url_env = q.url_env.as_deref().unwrap_or(""),
                        "push channel's [queue] has no URL (queue.url empty, queue.url_env unset); no consumer"
                    );
                    false
                }
                Some(_) => true,
                None => false,
            }
        })
        .map(str::to_owned)
        .collect()
}

/// Starts one consumer per name in `channels`; each runs until `shutdown`, logging and
/// retrying its failures (a failing queue never stops the service).
pub fn spawn(
    channels: Vec<String>,
    sqs: aws_sdk_sqs::Client,
    publishing: Publishing,
    registry: Arc<SharedRegistry>,
    shutdown: &CancellationToken,
) {
    for channel in channels {
        tracing::info!(channel, "push channel queue consumer started");
        let consumer = QueueConsumer {
            channel,
            sqs: sqs.clone(),
            publishing: publishing.clone(),
            registry: registry.clone(),
        };
        tokio::spawn(consumer.run(shutdown.clone()));
    }
}

/// Consumes the queue of one push channel.
pub struct QueueConsumer {
    /// The push channel's name.
    pub channel: String,
    pub sqs: aws_sdk_sqs::Client,
    pub publishing: Publishing,
    pub registry: Arc<SharedRegistry>,
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Committed or replayed, or dead-lettered: delete it.
    Delete,
    /// Left for the queue's redrive policy (no dead-letter queue).
    Keep,
    /// A transient failure: visible again after its visibility timeout.
    Retry,
}

struct Current {
    spec: Arc<PushSpec>,
    queue: QueueSpec,
    params: ParamSpecs,
}

impl QueueConsumer {
    /// Receives, publishes and deletes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        // Consecutive failed receives; consecutive rounds where nothing could be published.
        let (mut failures, mut stalled): (u32, u32) = (0, 0);
        loop {
            let Some(current) = self.current() else {
                tracing::warn!(
                    channel = self.channel,
                    "push channel without a queue any more; consumer idle"
                );
                if pause(IDLE_RECHECK, &shutdown).await {
                    return;
                }
                continue;
            };
            let url = current.queue.queue_url();
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .wait_time_seconds(current.queue.wait_secs as i32)
                .max_number_of_messages(current.queue.max_messages as i32)
                .visibility_timeout(current.queue.visibility_timeout_secs as i32)
                .send();
            let started = tokio::time::Instant::now();
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = receive => received,
            };
            let messages = match received {
                Ok(out) => {
                    failures = 0;
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    self.sqs_error();
                    failures += 1;
                    tracing::warn!(
                        channel = self.channel,
                        error = %DisplayErrorContext(&e),
                        "SQS receive failed; retrying"
                    );
                    if pause(backoff(failures), &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                // No long poll (`wait_secs = 0`, or an endpoint that ignores it): at most one
                // empty receive a second.
                let early = MIN_EMPTY_RECEIVE.saturating_sub(started.elapsed());
                if pause(early, &shutdown).await {
                    return;
                }
                continue;
            }
            let (deletes, retried, progressed) =
                self.handle_all(&current, messages, &shutdown).await;
            self.delete(&url, deletes).await;
            if retried && !progressed {
                // Everything this round failed transiently: no hot loop on a sick channel.
                stalled += 1;
                if pause(backoff(stalled), &shutdown).await {
                    return;
                }
            } else {
                stalled = 0;
            }
        }
    }

    /// The channel's spec, queue and params as the registry holds them now (channels reload).
    fn current(&self) -> Option<Current> {
        let registry = self.registry.current();
        let entry = registry.get(&self.channel)?;
        let spec = entry.fetcher.push()?;
        let queue = spec.queue.clone()?;
        Some(Current {
            spec,
            queue,
            params: entry.metadata.params.declared().clone(),
        })
    }

    /// Handles the received messages in order; a channel with a transient failure takes no
    /// further message of this round (its later messages wait, keeping their order).
    /// Returns the messages to delete, whether any was retried, and whether any was done with
    /// (committed, replayed or dead-lettered).
    async fn handle_all(
        &self,
        current: &Current,
        messages: Vec<Message>,
        shutdown: &CancellationToken,
    ) -> (Vec<Message>, bool, bool) {
        let mut blocked: HashSet<ChannelId> = HashSet::new();
        let (mut deletes, mut retried, mut progressed) = (Vec::new(), false, false);
        for message in messages {
            if shutdown.is_cancelled() {
                break; // Unhandled messages come back after their visibility timeout.
            }
            let outcome = match self.handle(current, &message, &mut blocked, shutdown).await {
                Some(outcome) => outcome,
                None => break,
            };
            match outcome {
                Outcome::Delete => {
                    progressed = true;
                    deletes.push(message);
                }
                Outcome::Retry => retried = true,
                Outcome::Keep => {}
            }
        }
        (deletes, retried, progressed)
    }

    /// One message; `None` when shutdown interrupted it.
    async fn handle(
        &self,
        current: &Current,
        message: &Message,
        blocked: &mut HashSet<ChannelId>,
        shutdown: &CancellationToken,
    ) -> Option<Outcome> {
        let id = message.message_id().unwrap_or_default();
        let body = message.body().unwrap_or_default();
        let (channel, op) = match map_message(&current.spec, &current.queue, &current.params, body)
        {
            Ok(mapped) => mapped,
            Err(why) => {
                let reason = why.to_string();
                return Some(self.refuse(current, message, why.code(), &reason).await);
            }
        };
        if blocked.contains(&channel) {
            self.count("retried");
            return Some(Outcome::Retry);
        }
        let batch = PushBatch {
            ops: vec![op],
            replace: false,
            idempotency_key: Some(format!("sqs:{id}")),
        };
        let published = tokio::select! {
            _ = shutdown.cancelled() => return None,
            published = self.publishing.publish(&channel, batch) => published,
        };
        Some(match published {
            Ok(receipt) if receipt.replayed => {
                self.count("replayed");
                Outcome::Delete
            }
            Ok(_) => {
                self.count("committed");
                Outcome::Delete
            }
            Err(e @ (PushError::Invalid(_) | PushError::NotPush(_) | PushError::KeyReused)) => {
                self.refuse(current, message, e.code(), &e.to_string())
                    .await
            }
            Err(e) => {
                tracing::warn!(
                    channel = self.channel,
                    message_id = id,
                    error = e.code(),
                    "queue message not published; it is retried after its visibility timeout"
                );
                self.count("retried");
                blocked.insert(channel);
                Outcome::Retry
            }
        })
    }

    /// A message that cannot be published: to the dead-letter queue when there is one (then
    /// deleted), else left for the queue's redrive policy.
    async fn refuse(
        &self,
        current: &Current,
        message: &Message,
        code: &str,
        reason: &str,
    ) -> Outcome {
        let id = message.message_id().unwrap_or_default();
        let body = message.body().unwrap_or_default();
        let Some(dlq) = current.queue.dead_letter_queue_url() else {
            tracing::warn!(
                channel = self.channel,
                message_id = id,
                error = code,
                reason,
                body_prefix = prefix(body, LOG_PREFIX_CHARS),
                "queue message cannot be published and there is no dead-letter queue; left in the queue"
            );
            self.count("unmappable_kept");
            return Outcome::Keep;
        };
        let attribute = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(prefix(v, 250))
                .build()
                .expect("data type set")
        };
        let mut send = self
            .sqs
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .message_attributes("restream_error", attribute(code))
            .message_attributes("restream_reason", attribute(reason))
            .message_attributes("restream_channel", attribute(&self.channel));
        if !id.is_empty() {
            send = send.message_attributes("restream_message_id", attribute(id));
        }
        match send.send().await {
            Ok(_) => {
                tracing::warn!(
                    channel = self.channel,
                    message_id = id,
                    error = code,
                    reason,
                    body_prefix = prefix(body, LOG_PREFIX_CHARS),
                    "queue message cannot be published; sent to the dead-letter queue"
                );
                self.count("dead_lettered");
                Outcome::Delete
            }
            Err(e) => {
                self.sqs_error();
                tracing::warn!(
                    channel = self.channel,
                    message_id = id,
                    error = %DisplayErrorContext(&e),
                    "dead-letter send failed; the message is retried"
                );
                self.count("retried");
                Outcome::Retry
            }
        }
    }

    /// Deletes `messages` (by tens); a failed delete only means the message comes again and
    /// is replayed (its idempotency key).
    async fn delete(&self, url: &str, messages: Vec<Message>) {
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle()?)
                        .build()
                        .ok()
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let result = self
                .sqs
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await;
            let failed = match result {
                Ok(out) => out.failed.len(),
                Err(e) => {
                    tracing::warn!(
                        channel = self.channel,
                        error = %DisplayErrorContext(&e),
                        "SQS delete failed; the messages come again and are replayed"
                    );
                    chunk.len()
                }
            };
            if failed > 0 {
                self.sqs_error();
                tracing::warn!(channel = self.channel, failed, "queue messages not deleted");
            }
        }
    }

    fn count(&self, result: &str) {
        metrics::get()
            .queue_messages
            .with_label_values(&[&self.channel, result])
            .inc();
    }

    fn sqs_error(&self) {
        metrics::get()
            .queue_receive_errors
            .with_label_values(&[&self.channel])
            .inc();
    }
}

/// 1 s doubling up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// Sleeps `d`; true when `shutdown` came first.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
