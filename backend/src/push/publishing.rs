//! [`Publishing`]: the one way a batch reaches a push channel, for the HTTP publish API, the
//! SQS consumer and the internal forwarding route. It checks the batch against the channel and
//! hands it to the channel's writer through the scheduler (here, or on the replica holding the
//! channel's lease).

use std::sync::Arc;

use crate::channel::ChannelId;
use crate::config::PushSettings;
use crate::fetcher::SharedRegistry;
use crate::scheduler::SchedulerHandle;

use super::{PushBatch, PushError, PushReceipt, PushSpec};

/// Cheap to clone; shared by every route and queue consumer.
#[derive(Clone)]
pub struct Publishing {
    scheduler: SchedulerHandle,
    registry: Arc<SharedRegistry>,
    settings: PushSettings,
}

impl Publishing {
    pub fn new(
        scheduler: SchedulerHandle,
        registry: Arc<SharedRegistry>,
        settings: PushSettings,
    ) -> Publishing {
        Publishing {
            scheduler,
            registry,
            settings,
        }
    }

    pub fn settings(&self) -> &PushSettings {
        &self.settings
    }

    /// The push channel named `name`, if there is one.
    pub fn spec(&self, name: &str) -> Option<Arc<PushSpec>> {
        self.registry.current().get(name)?.fetcher.push()
    }

    /// Commits `batch` to `channel` (a canonical id of a push channel) through its writer,
    /// atomically and in order; the receipt says what it did.
    pub async fn publish(
        &self,
        channel: &ChannelId,
        batch: PushBatch,
    ) -> Result<PushReceipt, PushError> {
        self.check(channel, &batch)?;
        self.scheduler.publish(channel.clone(), batch, false).await
    }

    /// A batch another replica forwarded here (cluster mode): checked again (the replicas'
    /// channel files may differ during a deployment), committed here or refused, never sent
    /// on.
    pub async fn publish_forwarded(
        &self,
        channel: &ChannelId,
        batch: PushBatch,
    ) -> Result<PushReceipt, PushError> {
        self.check(channel, &batch)?;
        self.scheduler.publish(channel.clone(), batch, true).await
    }

    /// The batch fits `channel`, a push channel.
    fn check(&self, channel: &ChannelId, batch: &PushBatch) -> Result<(), PushError> {
        let spec = self
            .spec(channel.name())
            .ok_or_else(|| PushError::NotPush(channel.name().to_string()))?;
        super::plan::check(&spec, batch, self.settings.max_batch_items)
    }
}
