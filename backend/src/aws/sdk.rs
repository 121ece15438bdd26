//! The AWS SDK side (feature `aws`): one configuration for every adapter (DynamoDB, S3, Lambda,
//! SQS): region and credentials from the SDK's standard chain, retries and timeouts from our
//! settings, and an optional endpoint override per service for local emulators.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::config::AwsSettings;

/// Loads the shared SDK configuration: region and credentials from the standard chain
/// (environment, profile, container or instance role) unless the settings name a region;
/// `AWS_ENDPOINT_URL*` variables are honoured by the SDK itself.
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry(settings))
        .timeout_config(timeouts(settings));
    if let Some(region) = settings.region.clone() {
        loader = loader.region(Region::new(region));
    }
    if let Some(url) = settings.endpoint_url.clone() {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The shared SDK configuration, loaded on first use: only the parts the settings put on AWS
/// ask for it, so a deployment without AWS never probes for credentials.
pub struct Aws {
    settings: AwsSettings,
    sdk: tokio::sync::OnceCell<SdkConfig>,
}

impl Aws {
    pub fn new(settings: &AwsSettings) -> Aws {
        Aws {
            settings: settings.clone(),
            sdk: tokio::sync::OnceCell::new(),
        }
    }

    pub async fn sdk(&self) -> &SdkConfig {
        self.sdk.get_or_init(|| load(&self.settings)).await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        dynamodb(self.sdk().await, &self.settings)
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        s3(self.sdk().await, &self.settings)
    }

    pub async fn lambda(&self, fetch_timeout: Duration) -> aws_sdk_lambda::Client {
        lambda(self.sdk().await, &self.settings, fetch_timeout)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        sqs(self.sdk().await, &self.settings)
    }
}

/// A Lambda client (see `LambdaClient` for builds without AWS).
pub type LambdaClient = aws_sdk_lambda::Client;

/// Standard retries (exponential backoff with jitter, throttling errors included), up to
/// `max_attempts` attempts per request in all.
pub fn retry(settings: &AwsSettings) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1))
}

fn timeouts(settings: &AwsSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(settings.attempt_timeout)
        .build()
}

/// A DynamoDB client for the item store.
pub fn dynamodb(sdk: &SdkConfig, settings: &AwsSettings) -> aws_sdk_dynamodb::Client {
    let mut conf = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = settings.dynamodb_endpoint_url.clone() {
        conf = conf.endpoint_url(url);
    }
    aws_sdk_dynamodb::Client::from_conf(conf.build())
}

/// An S3 client for the key store. With an endpoint override (an emulator), buckets are
/// addressed by path, since `bucket.localhost` names do not resolve.
pub fn s3(sdk: &SdkConfig, settings: &AwsSettings) -> aws_sdk_s3::Client {
    let mut conf = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(url) = settings.s3_endpoint_url.clone() {
        conf = conf.endpoint_url(url);
    }
    if settings.s3_endpoint_url.is_some() || settings.endpoint_url.is_some() {
        conf = conf.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}

/// A Lambda client for fetchers. A fetch may run up to `fetch_timeout`, so the per-attempt
/// timeout is stretched to cover it.
pub fn lambda(
    sdk: &SdkConfig,
    settings: &AwsSettings,
    fetch_timeout: Duration,
) -> aws_sdk_lambda::Client {
    let attempt = settings.attempt_timeout.max(fetch_timeout);
    let mut conf = aws_sdk_lambda::config::Builder::from(sdk).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(attempt + Duration::from_secs(5))
            .build(),
    );
    if let Some(url) = settings.lambda_endpoint_url.clone() {
        conf = conf.endpoint_url(url);
    }
    aws_sdk_lambda::Client::from_conf(conf.build())
}

/// An SQS client for push channels' queue consumers. A receive long-polls up to 20 s, so the
/// per-attempt timeout leaves room for it.
pub fn sqs(sdk: &SdkConfig, settings: &AwsSettings) -> aws_sdk_sqs::Client {
    let attempt = settings.attempt_timeout.max(Duration::from_secs(20));
    let mut conf = aws_sdk_sqs::config::Builder::from(sdk).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(attempt + Duration::from_secs(5))
            .build(),
    );
    if let Some(url) = settings.sqs_endpoint_url.clone() {
        conf = conf.endpoint_url(url);
    }
    aws_sdk_sqs::Client::from_conf(conf.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AwsSettings {
        AwsSettings {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            s3_endpoint_url: Some("http://127.0.0.1:2".into()),
            sqs_endpoint_url: Some("http://127.0.0.1:3".into()),
            ..AwsSettings::default()
        }
    }

    #[tokio::test]
    async fn settings_reach_the_clients() {
        let sdk = load(&settings()).await;
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:1"));
        let s3 = s3(&sdk, &settings());
        assert_eq!(
            s3.config().region().map(|r| r.as_ref()),
            Some("eu-west-1"),
            "service clients inherit the shared config"
        );
        let sqs = sqs(&sdk, &settings());
        assert_eq!(sqs.config().region().map(|r| r.as_ref()), Some("eu-west-1"));
        let long_poll = sqs.config().timeout_config().unwrap();
        assert!(
            long_poll.operation_attempt_timeout() > Some(Duration::from_secs(20)),
            "a 20 s long poll fits in one attempt"
        );
    }

    #[test]
    fn at_least_one_attempt() {
        let s = AwsSettings {
            max_attempts: 0,
            ..AwsSettings::default()
        };
        assert_eq!(retry(&s).max_attempts(), 1);
    }
}
