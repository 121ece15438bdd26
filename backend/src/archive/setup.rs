//! Builds the archive from `[archive]`: a target per configured sink type, the shared state,
//! the reader history uses, the admin API's control and the archiver task.

use std::sync::Arc;

use super::archiver::{Archiver, Targets};
use super::book::Book;
use super::control::Sinks;
use super::local::LocalTarget;
use super::reader::ArchiveReader;
use super::{SinkControl, SinkType};
use crate::config::Archive;
use crate::history::ArchiveRead;
use crate::store::ItemStore;

pub struct Setup {
    pub book: Arc<Book>,
    pub targets: Targets,
    /// The sinks' checkpoints, for the pollers' log retention.
    pub holds: Arc<super::Holds>,
}

impl Setup {
    /// The archive over `targets`; `None` without any.
    pub fn new(settings: &Archive, store: Arc<dyn ItemStore>, targets: Targets) -> Option<Setup> {
        if targets.is_empty() {
            return None;
        }
        Some(Setup {
            book: Arc::new(Book::new(store, settings.clone())),
            targets,
            holds: Arc::new(super::Holds::new(settings.max_held_events)),
        })
    }

    /// The targets `settings` configure (S3 clients from `aws`, built only when a bucket is
    /// set).
    pub async fn targets(settings: &Archive, aws: &crate::aws::Aws) -> Targets {
        let mut targets = Targets::new();
        if settings.has_target(SinkType::Local) {
            targets.insert(
                SinkType::Local,
                Arc::new(LocalTarget::new(settings.local_dir.clone())),
            );
        }
        #[cfg(feature = "aws")]
        if settings.has_target(SinkType::S3) {
            let client = aws.s3().await;
            let target = super::s3::S3Target::new(client, &settings.s3_bucket, &settings.s3_prefix);
            targets.insert(SinkType::S3, Arc::new(target));
        }
        // Without AWS, settings with an S3 bucket are refused when they are read.
        #[cfg(not(feature = "aws"))]
        let _ = aws;
        targets
    }

    /// What history reads archived ranges from (`archive.read_from`).
    pub fn reader(&self) -> Option<Arc<dyn ArchiveRead>> {
        let sink = self.book.settings.read_sink()?;
        let target = self.targets.get(&sink)?.clone();
        Some(Arc::new(
            ArchiveReader::new(target).only_channels_with_sinks(self.holds.clone()),
        ))
    }

    pub fn control(&self) -> Arc<dyn SinkControl> {
        Arc::new(Sinks::new(self.book.clone()))
    }

    pub fn archiver(&self) -> Archiver {
        Archiver::new(self.book.clone(), self.targets.clone())
    }
}
