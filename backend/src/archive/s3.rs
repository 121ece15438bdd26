//! The S3 sink: objects under `archive.s3_prefix` in `archive.s3_bucket` (a PUT replaces an
//! object whole, so a retried upload under the same key leaves no duplicate).

use async_trait::async_trait;
use aws_sdk_s3::error::DisplayErrorContext;

use super::target::{SinkTarget, TargetError};
use super::SinkType;

pub struct S3Target {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Target {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> S3Target {
        S3Target {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }
    }
}

fn failed<E: std::error::Error>(what: &'static str, e: E) -> TargetError {
    TargetError {
        sink: "s3",
        what,
        detail: DisplayErrorContext(e).to_string(),
    }
}

#[async_trait]
impl SinkTarget for S3Target {
    fn sink(&self) -> SinkType {
        SinkType::S3
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), TargetError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .content_type("application/x-ndjson")
            .body(body.into())
            .send()
            .await
            .map_err(|e| failed("write objects", e))?;
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        max: usize,
    ) -> Result<Vec<String>, TargetError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(format!("{}{prefix}", self.prefix))
                .start_after(format!("{}{start_after}", self.prefix))
                .max_keys(i32::try_from(max - out.len()).unwrap_or(1000).min(1000))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| failed("list objects", e))?;
            for object in page.contents() {
                let key = object.key().unwrap_or_default();
                if let Some(key) = key.strip_prefix(&self.prefix) {
                    if super::layout::first_seq(key).is_some() {
                        out.push(key.to_string());
                    }
                }
            }
            match page.next_continuation_token() {
                Some(t) if out.len() < max => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, TargetError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(format!("{}{key}", self.prefix))
            .send()
            .await
            .map_err(|e| failed("read objects", e))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| failed("read objects", e))?;
        Ok(body.into_bytes().to_vec())
    }
}
