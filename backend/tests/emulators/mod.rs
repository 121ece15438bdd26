//! The AWS emulators of the test kit (`restream_testkit::emulators`: moto for DynamoDB and S3,
//! minilambda for Lambda), and what only these tests need of them: an S3 bucket.
#![allow(dead_code, unused_imports)] // each test binary uses a different part

pub use restream_testkit::emulators::{
    aws_env, aws_settings, sdk_config, start_minilambda, start_minilambda_paged, start_moto,
    unique, Server,
};
pub use restream_testkit::repo_root;

/// An S3 client on `moto` (path-style, as the service builds it) and a new bucket.
pub async fn s3_bucket(moto: &Server) -> (aws_sdk_s3::Client, String) {
    let settings = aws_settings(&moto.url);
    let sdk = sdk_config(&settings).await;
    let s3 = restream::aws::s3(&sdk, &settings);
    let name = unique("keys");
    s3.create_bucket().bucket(&name).send().await.unwrap();
    (s3, name)
}
