//! Cluster mode's forwarded publishes: a replica that receives a push batch for a channel
//! whose lease another replica holds sends it to that replica's `POST /internal/publish`
//! (backend port, cluster secret) and relays the answer: the receipt, or the error's code.
// Reading the holder's answer is the sending side, which only the DynamoDB leases use.
#![cfg_attr(not(feature = "aws"), allow(dead_code))]

use serde::{Deserialize, Serialize};

use super::HandOverError;
use crate::channel::ChannelId;
use crate::push::{PushBatch, PushError, PushReceipt};

/// The internal route's path.
pub const PUBLISH_PATH: &str = "/internal/publish";

/// A batch on its way to the replica holding its channel's lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedPublish {
    /// The canonical channel id.
    pub channel: String,
    pub batch: PushBatch,
}

impl ForwardedPublish {
    pub fn new(channel: &ChannelId, batch: &PushBatch) -> ForwardedPublish {
        ForwardedPublish {
            channel: channel.as_str().to_string(),
            batch: batch.clone(),
        }
    }
}

/// The error answer of the internal route: `{"error": {"code": ..., "message": ...}}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// The push error an error code stands for (what the holder answered).
pub fn error_from_code(code: &str, message: String) -> PushError {
    match code {
        "invalid_items" => PushError::Invalid(message),
        "not_a_push_channel" => PushError::NotPush(message),
        "idempotency_key_reused" => PushError::KeyReused,
        "busy" => PushError::Busy,
        "channel_limit" => PushError::ChannelCap,
        _ => PushError::Unavailable,
    }
}

/// Reads the holder's answer: a receipt (200), a push error (its code), or a failure to
/// deliver (anything else).
pub(super) async fn read_answer(
    url: String,
    response: reqwest::Response,
) -> Result<Result<PushReceipt, PushError>, HandOverError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|source| HandOverError::Unreachable {
            url: url.clone(),
            source,
        })?;
    if status.is_success() {
        return serde_json::from_slice::<PushReceipt>(&body)
            .map(Ok)
            .map_err(|_| HandOverError::Refused {
                url,
                status: status.as_u16(),
            });
    }
    match serde_json::from_slice::<ErrorAnswer>(&body) {
        Ok(answer) => Ok(Err(error_from_code(
            &answer.error.code,
            answer.error.message,
        ))),
        Err(_) => Err(HandOverError::Refused {
            url,
            status: status.as_u16(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_push_error_survives_the_trip_by_its_code() {
        for e in [
            PushError::Invalid("entry 3: no usable id".into()),
            PushError::NotPush("x".into()),
            PushError::KeyReused,
            PushError::Busy,
            PushError::ChannelCap,
            PushError::Unavailable,
        ] {
            let message = match &e {
                PushError::Invalid(m) | PushError::NotPush(m) => m.clone(),
                _ => String::new(),
            };
            assert_eq!(error_from_code(e.code(), message), e);
        }
    }
}
