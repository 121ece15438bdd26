//! AWS support, behind the cargo feature `aws` (on by default, so `cargo build` and the release
//! images have every adapter). `scripts/dev.sh` builds without it to start faster; settings that
//! need AWS are then refused when they are read, with a message saying how to get it.

#[cfg(feature = "aws")]
mod sdk;
#[cfg(feature = "aws")]
pub use sdk::*;

use crate::config::{FetcherKind, KeysSettings, Settings, SettingsError, StoreKind};

/// Whether this binary was built with the AWS adapters.
pub const BUILT_IN: bool = cfg!(feature = "aws");

/// Stands in for the SDK configuration in a build without AWS: nothing can ask it for a client,
/// since settings that would are refused (see [`uses`]).
#[cfg(not(feature = "aws"))]
pub struct Aws;

#[cfg(not(feature = "aws"))]
impl Aws {
    pub fn new(_settings: &crate::config::AwsSettings) -> Aws {
        Aws
    }
}

/// A Lambda client; in a build without AWS nothing can make one.
#[cfg(not(feature = "aws"))]
pub type LambdaClient = std::convert::Infallible;

/// What `settings` put on AWS, by setting, e.g. `store.kind = "dynamodb"`.
pub fn uses(settings: &Settings) -> Vec<&'static str> {
    let mut uses = Vec::new();
    if matches!(settings.store.kind, StoreKind::Dynamodb(_)) {
        uses.push("store.kind = \"dynamodb\"");
    }
    if matches!(settings.keys, KeysSettings::S3 { .. }) {
        uses.push("keys.kind = \"s3\"");
    }
    if settings.fetchers.kinds.contains(&FetcherKind::Lambda) {
        uses.push("fetchers.kinds has \"lambda\"");
    }
    if settings.archive.has_target(crate::archive::SinkType::S3) {
        uses.push("archive.s3_bucket");
    }
    uses
}

/// Refuses `settings` that use AWS when it is not `built_in`, naming every setting that does.
pub fn refuse_unless_built(built_in: bool, settings: &Settings) -> Result<(), SettingsError> {
    let uses = uses(settings);
    match built_in || uses.is_empty() {
        true => Ok(()),
        false => Err(SettingsError::AwsNotBuilt(unavailable(&uses.join(", ")))),
    }
}

/// The error for something that needs AWS in a build without it.
pub fn unavailable(what: &str) -> String {
    format!(
        "{what} needs AWS, and this restream binary was built without it (the cargo feature \
         `aws`, on by default; `scripts/dev.sh` leaves it out to build faster): build with \
         `cargo build --release -p restream` or use the container image"
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::DynamodbSettings;

    #[test]
    fn the_embedded_defaults_need_no_aws() {
        let settings = Settings::default();
        assert!(uses(&settings).is_empty());
        assert_eq!(refuse_unless_built(false, &settings), Ok(()));
    }

    #[test]
    fn a_build_without_aws_refuses_every_aws_setting_by_name() {
        let mut s = Settings::default();
        s.store.kind = StoreKind::Dynamodb(DynamodbSettings {
            table: "t".into(),
            create_table: false,
            log_ttl: Duration::from_secs(60),
            cluster: None,
        });
        s.keys = KeysSettings::S3 {
            bucket: "b".into(),
            key: "k".into(),
            refresh: Duration::from_secs(60),
        };
        s.fetchers.kinds.push(FetcherKind::Lambda);
        s.archive.s3_bucket = "archive".into();
        assert_eq!(uses(&s).len(), 4, "{:?}", uses(&s));
        assert_eq!(refuse_unless_built(true, &s), Ok(()));
        let err = refuse_unless_built(false, &s).unwrap_err().to_string();
        for named in [
            "store.kind",
            "keys.kind",
            "lambda",
            "archive.s3_bucket",
            "cargo build",
        ] {
            assert!(err.contains(named), "{named} not in: {err}");
        }
    }
}
