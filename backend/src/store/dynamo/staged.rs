//! Commits too large for one transaction: staged as chunks, switched in by the meta record
//! (the commit point), then finished by whoever reads the channel next.

use aws_sdk_dynamodb::types::WriteRequest;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::records::*;

use crate::store::{ChannelMeta, Commit, StoreError};

use super::requests::{delete_request, put_request};
use super::{now_secs, DynamoItemStore, CHUNK_BYTES, PARALLEL_WRITES, PENDING_TTL};

impl DynamoItemStore {
    /// A large commit: stage its chunks, switch the meta record (the commit point), finish.
    /// `Ok(false)` when the meta condition failed.
    pub(super) async fn commit_staged(
        &self,
        commit: &Commit,
        meta: &ChannelMeta,
    ) -> Result<bool, StoreError> {
        let chunks = chunked(commit);
        let expires = now_secs() + PENDING_TTL.as_secs();
        let pending = Pending {
            seq: meta.seq,
            attempt: rand::random(),
            chunks: chunks.len(),
        };
        let staged: Vec<Record> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut r = key(commit.channel.as_str(), pending_sk(&pending, i));
                r.insert(
                    "chunk".into(),
                    s(serde_json::to_string(chunk).expect("chunks serialize")),
                );
                r.insert(TTL_ATTRIBUTE.into(), n(expires));
                r
            })
            .collect();
        self.batch_write(
            staged
                .into_iter()
                .map(|r| WriteRequest::builder().put_request(put_request(r)).build())
                .collect(),
        )
        .await?;
        let meta_put = self.meta_record(commit.channel.as_str(), meta, Some(&pending));
        let switched = match commit.fence {
            // The commit point and the fence in one transaction.
            Some(epoch) => {
                let put = self.put(meta_put, Some(Self::meta_condition(commit.expected_seq)));
                self.commit_in_one(commit.channel.as_str(), vec![put], Some(epoch))
                    .await?
            }
            None => {
                let (condition, values) = Self::meta_condition(commit.expected_seq);
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(meta_put))
                    .condition_expression(condition)
                    .set_expression_attribute_values(Some(values))
                    .send()
                    .await;
                self.applied("PutItem", result)?
            }
        };
        if !switched {
            return Ok(false);
        }
        self.finish(commit.channel.as_str(), &pending).await?;
        Ok(true)
    }

    /// Applies a staged commit's chunks (idempotent, safe against newer commits), then clears
    /// the marker and the chunks.
    pub(super) async fn finish(&self, channel: &str, pending: &Pending) -> Result<(), StoreError> {
        let expires = now_secs() + self.log_ttl.as_secs();
        for i in 0..pending.chunks {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(channel, pending_sk(pending, i))))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.error("GetItem", e))?;
            // A missing chunk was finished and cleared by another reader.
            let Some(record) = out.item() else { continue };
            let chunk = parse_chunk(record)?;
            let mut writes: Vec<(Record, bool)> = Vec::new();
            writes.extend(chunk.upserts.iter().map(|i| {
                let mut record = item_record(channel, i);
                self.stamp(&mut record);
                (record, true)
            }));
            writes.extend(
                chunk
                    .events
                    .iter()
                    .map(|e| (event_record(channel, e, expires), true)),
            );
            writes.extend(
                chunk
                    .removals
                    .iter()
                    .map(|id| (key(channel, item_sk(id)), false)),
            );
            stream::iter(writes)
                .map(|(record, is_put)| self.write_if_not_newer(record, is_put, pending.seq))
                .buffer_unordered(PARALLEL_WRITES)
                .try_collect::<Vec<()>>()
                .await?;
        }
        let cleared = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(channel, META)))
            .update_expression("REMOVE pending")
            .condition_expression("pending = :p")
            .expression_attribute_values(
                ":p",
                s(serde_json::to_string(pending).expect("pending serializes")),
            )
            .send()
            .await;
        self.applied("UpdateItem", cleared)?;
        self.batch_write(
            (0..pending.chunks)
                .map(|i| delete_request(key(channel, pending_sk(pending, i))))
                .collect(),
        )
        .await
    }

    /// A put or delete that does nothing when the record already holds a newer seq.
    pub(super) async fn write_if_not_newer(
        &self,
        record: Record,
        is_put: bool,
        seq: u64,
    ) -> Result<(), StoreError> {
        let condition = "attribute_not_exists(seq) OR seq <= :s";
        if is_put {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(record))
                .condition_expression(condition)
                .expression_attribute_values(":s", n(seq))
                .send()
                .await;
            self.applied("PutItem", result).map(|_| ())
        } else {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(record))
                .condition_expression(condition)
                .expression_attribute_values(":s", n(seq))
                .send()
                .await;
            self.applied("DeleteItem", result).map(|_| ())
        }
    }
}

/// Splits a commit's writes into chunks of about [`CHUNK_BYTES`] of JSON each. Each write is
/// measured as the chunk will store it: serialized, so an event's message counts with its
/// quotes escaped (a message of 1,000 bytes can take 1,300 in the chunk).
pub(super) fn chunked(commit: &Commit) -> Vec<Chunk> {
    pub(super) fn json_len(v: &impl serde::Serialize) -> usize {
        serde_json::to_string(v).map_or(0, |s| s.len())
    }
    let mut chunks = vec![Chunk::default()];
    let mut size = 0;
    let mut room = |bytes: usize, chunks: &mut Vec<Chunk>| {
        if size + bytes > CHUNK_BYTES && size > 0 {
            chunks.push(Chunk::default());
            size = 0;
        }
        size += bytes + 8;
    };
    for item in &commit.upserts {
        room(json_len(item), &mut chunks);
        chunks
            .last_mut()
            .expect("one chunk")
            .upserts
            .push(item.clone());
    }
    for id in &commit.removals {
        room(json_len(id), &mut chunks);
        chunks
            .last_mut()
            .expect("one chunk")
            .removals
            .push(id.clone());
    }
    for event in &commit.events {
        room(json_len(event), &mut chunks);
        chunks
            .last_mut()
            .expect("one chunk")
            .events
            .push(event.clone());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LoggedEvent;

    #[test]
    fn chunks_fit_a_record_even_when_event_messages_are_all_quotes() {
        // 400 quote-heavy events of ~1.3 KB: escaped, each takes ~2 KB in a chunk.
        let message = format!(
            "{{\"type\":\"new\",\"item\":{{{}}}}}",
            "\"a\":\"b\",".repeat(130)
        );
        let commit = Commit {
            events: (1..=400)
                .map(|seq| LoggedEvent::new(seq, message.clone(), seq))
                .collect(),
            ..Commit::new(crate::channel::ChannelId::parse("t").unwrap())
        };
        let chunks = chunked(&commit);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            let bytes = serde_json::to_string(chunk).unwrap().len();
            assert!(bytes <= CHUNK_BYTES + 4096, "a chunk of {bytes} bytes");
        }
        assert_eq!(chunks.iter().map(|c| c.events.len()).sum::<usize>(), 400);
    }
}
