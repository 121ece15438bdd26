//! The e2e stack: the test kit's Pushpin + backend + fake upstream, with the real fetchers in
//! `functions/` and channels in `channels/`, the backend config these tests run with, and the
//! AWS profile on local emulators. Clients and the rest come from `restream_testkit`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use restream::config::{
    DynamodbSettings, FetcherKind, KeysSettings, PublishVia, Settings, StoreKind,
    DEFAULT_DYNAMODB_LOG_TTL,
};
pub use restream_testkit::backend::Backend;
pub use restream_testkit::clients::http::{get_json, scrape, value};
pub use restream_testkit::clients::sse::SseClient;
pub use restream_testkit::clients::ws::Client;
pub use restream_testkit::ports::{free_port, free_port_block};
use restream_testkit::process::Spec;
use restream_testkit::stack::Layout;
pub use restream_testkit::upstream::Upstream;

pub const POLL_INTERVAL: f64 = 2.0;

/// The `restream` binary this test build made, as a [`Backend`].
pub trait LaunchRestream: Sized {
    /// Starts `restream serve --config config` with `env`, logging to `log`, and waits until
    /// `addr` answers `/healthz`.
    fn launch(
        config: PathBuf,
        env: Vec<(String, String)>,
        log: PathBuf,
        addr: SocketAddr,
    ) -> impl std::future::Future<Output = Self>;
}

impl LaunchRestream for Backend {
    async fn launch(
        config: PathBuf,
        env: Vec<(String, String)>,
        log: PathBuf,
        addr: SocketAddr,
    ) -> Backend {
        Backend::start(restream(config, env, log), addr)
            .await
            .unwrap_or_else(|e| panic!("backend did not become healthy: {e}"))
    }
}

/// `restream serve --config config`, debug logs on both streams into `log`.
fn restream(config: PathBuf, env: Vec<(String, String)>, log: PathBuf) -> Spec {
    let mut spec = Spec::new("restream", env!("CARGO_BIN_EXE_restream"), log)
        .arg("serve")
        .arg("--config")
        .arg(config);
    spec.env = env;
    spec.env("RUST_LOG", "info,restream=debug")
}

/// Pushpin + backend + fake upstream (the kit's stack, which it derefs to), and the emulators
/// of the AWS profile; stopped on drop.
pub struct Stack {
    /// The emulators behind the AWS profile.
    pub aws: Option<AwsStack>,
    inner: restream_testkit::stack::Stack,
}

impl std::ops::Deref for Stack {
    type Target = restream_testkit::stack::Stack;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

pub struct StackOptions {
    pub subscription_linger: u32,
    pub stats_subscription_ttl: u32,
    /// Fetcher folders served beside the real ones in `functions/`.
    pub extra_fetchers: Vec<PathBuf>,
    pub fetcher_timeout_secs: f64,
    /// Extra environment for the backend (and so for its fetcher processes).
    pub env: Vec<(String, String)>,
    pub publish: &'static str,
    /// Contents of the keys file (written with mode 0600).
    pub keys: Option<String>,
    /// Declarative channel files (name, TOML) served beside the ones in `channels/`.
    pub extra_channels: Vec<(&'static str, String)>,
    /// Run on the AWS adapters (DynamoDB store, S3 keys, Lambda fetchers) against local
    /// emulators instead of the embedded defaults.
    pub aws: Option<AwsOptions>,
    /// Changes the backend settings last, before they are written.
    pub configure: Option<fn(&mut Settings)>,
    /// Sets `http_proxy` to the fake upstream (and `no_proxy` to loopback) for the backend
    /// and its fetcher processes, so a fetcher calling a fixed `http://` host (the original
    /// restream's, unmodified) reaches the fake upstream and nothing else.
    pub http_proxy_to_upstream: bool,
}

/// The production profile: `store = dynamodb`, `keys = s3`, `fetchers = lambda`.
#[derive(Default)]
pub struct AwsOptions {
    /// The keys object uploaded before the backend starts; `None` leaves it missing.
    pub keys: Option<String>,
    /// Extra Lambda functions (folders with `main.py`) deployed beside the real ones.
    pub functions: Vec<PathBuf>,
}

/// moto (DynamoDB, S3) and minilambda (Lambda) for one stack.
pub struct AwsStack {
    /// The Apex project minilambda serves.
    project: PathBuf,
    pub moto: crate::emulators::Server,
    pub lambda: crate::emulators::Server,
    pub bucket: String,
    pub table: String,
    s3: aws_sdk_s3::Client,
}

impl AwsStack {
    async fn start(
        root: &std::path::Path,
        opts: &AwsOptions,
        env: &[(String, String)],
    ) -> AwsStack {
        let moto = crate::emulators::start_moto();
        let (s3, bucket) = crate::emulators::s3_bucket(&moto).await;
        // An Apex project as `apex deploy` would see it: the repo's project.json and functions.
        let project = root.join("lambda");
        std::fs::create_dir_all(&project).unwrap();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::copy(repo.join("project.json"), project.join("project.json")).unwrap();
        linked_functions(&project.join("functions"), &opts.functions);
        let lambda = crate::emulators::start_minilambda(&project, env);
        let stack = AwsStack {
            project,
            moto,
            lambda,
            bucket,
            table: crate::emulators::unique("items"),
            s3,
        };
        if let Some(keys) = &opts.keys {
            stack.put_keys(keys).await;
        }
        stack
    }

    /// Deploys one more function (a folder with `main.py`) while everything runs.
    pub async fn deploy(&self, function: &std::path::Path) {
        let dir = self
            .project
            .join("functions")
            .join(function.file_name().unwrap());
        std::os::unix::fs::symlink(function, dir).unwrap();
        reqwest::Client::new()
            .post(format!("{}/_control/rescan", self.lambda.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }

    /// Uploads (replaces) the keys object.
    pub async fn put_keys(&self, text: &str) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key("keys.json")
            .body(text.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }

    /// The production profile on these emulators.
    fn configure(&self, settings: &mut Settings) {
        settings.fetchers.kinds = vec![FetcherKind::Lambda];
        settings.store.kind = StoreKind::Dynamodb(DynamodbSettings {
            table: self.table.clone(),
            create_table: true,
            log_ttl: DEFAULT_DYNAMODB_LOG_TTL,
            cluster: None,
        });
        settings.keys = KeysSettings::S3 {
            bucket: self.bucket.clone(),
            key: "keys.json".into(),
            refresh: Duration::from_secs(1),
        };
        settings.aws.region = Some("us-east-1".into());
        settings.aws.endpoint_url = Some(self.moto.url.clone());
        settings.aws.lambda_endpoint_url = Some(self.lambda.url.clone());
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            subscription_linger: 1,
            stats_subscription_ttl: 60,
            extra_fetchers: Vec::new(),
            fetcher_timeout_secs: 10.0,
            env: Vec::new(),
            publish: "zmq",
            keys: None,
            extra_channels: Vec::new(),
            aws: None,
            configure: None,
            http_proxy_to_upstream: false,
        }
    }
}

/// The repo's `channels/`, or a copy of it with extra channel files.
fn channels_dir(root: &std::path::Path, extras: &[(&str, String)]) -> PathBuf {
    let real = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../channels");
    if extras.is_empty() {
        return real;
    }
    let dir = root.join("channels");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&real).unwrap() {
        let src = entry.unwrap().path();
        std::os::unix::fs::symlink(&src, dir.join(src.file_name().unwrap())).unwrap();
    }
    for (name, text) in extras {
        // An extra may replace a real file: drop its symlink first, or the write would go
        // through it into the repository's channels/.
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// A folder of symlinks: every real fetcher plus the extras.
fn fetchers_dir(root: &std::path::Path, extras: &[PathBuf]) -> PathBuf {
    if extras.is_empty() {
        return PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../functions");
    }
    linked_functions(&root.join("functions"), extras)
}

/// Creates `dir` with a symlink to every real fetcher folder and to each extra one.
fn linked_functions(dir: &std::path::Path, extras: &[PathBuf]) -> PathBuf {
    let real = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../functions");
    std::fs::create_dir_all(dir).unwrap();
    let reals = std::fs::read_dir(&real).unwrap().map(|e| e.unwrap().path());
    for src in reals.chain(extras.iter().cloned()) {
        std::os::unix::fs::symlink(&src, dir.join(src.file_name().unwrap())).unwrap();
    }
    dir.to_path_buf()
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(StackOptions::default()).await
    }

    pub async fn start_with(opts: StackOptions) -> Stack {
        let mut layout = Layout::new("rs").expect("a stack layout");
        let upstream = Upstream::start().await;
        let dir = &layout.dir;
        let options = &mut layout.pushpin;
        options.subscription_linger = opts.subscription_linger;
        options.stats_subscription_ttl = opts.stats_subscription_ttl;
        options.message_rate = 50_000;
        let functions = fetchers_dir(dir.path(), &opts.extra_fetchers);
        if let Some(keys) = &opts.keys {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("keys.json");
            std::fs::write(&path, keys).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let base = format!("http://{}", upstream.addr);
        let mut base_urls: Vec<(String, String)> =
            ["USGS_BASE_URL", "NYT_BASE_URL", "OPEN_METEO_BASE_URL"]
                .into_iter()
                .map(|k| (k.to_string(), base.clone()))
                .collect();
        if opts.http_proxy_to_upstream {
            base_urls.push(("http_proxy".into(), base.clone()));
            base_urls.push(("no_proxy".into(), "127.0.0.1,localhost".into()));
        }
        let aws = match &opts.aws {
            Some(aws) => {
                let env: Vec<_> = base_urls.iter().cloned().chain(opts.env.clone()).collect();
                Some(AwsStack::start(dir.path(), aws, &env).await)
            }
            None => None,
        };
        let mut settings = layout.settings(match opts.publish {
            "zmq" => PublishVia::Zmq,
            "http" => PublishVia::Http,
            other => panic!("publish = {other:?}"),
        });
        settings.server.keep_alive_interval = Duration::from_secs(20);
        let f = &mut settings.fetchers;
        f.dir = functions;
        f.channels_dir = channels_dir(dir.path(), &opts.extra_channels);
        f.timeout = Duration::from_secs_f64(opts.fetcher_timeout_secs);
        f.refresh = Duration::from_secs(1);
        f.poll_interval_overrides = ["usgs-earthquakes", "open-meteo-current", "nyt-top"]
            .map(|name| (name.to_string(), Duration::from_secs_f64(POLL_INTERVAL)))
            .into();
        match &aws {
            Some(aws) => aws.configure(&mut settings),
            None => {
                settings.fetchers.kinds = vec![FetcherKind::Process, FetcherKind::Http];
                settings.keys = KeysSettings::File {
                    file: dir.path().join("keys.json"),
                };
                settings.store.kind = StoreKind::Embedded {
                    path: dir.path().join("items.redb"),
                };
            }
        }
        // Many clients on one address, fast polls: the abuse bounds out of the way unless a
        // test sets them (abuse.rs).
        restream_testkit::stack::lift_abuse_limits(&mut settings);
        if opts.http_proxy_to_upstream {
            let env = &mut settings.fetchers.process_env;
            env.extend(["http_proxy".to_string(), "no_proxy".to_string()]);
        }
        if let Some(configure) = opts.configure {
            configure(&mut settings);
        }
        let config = dir.path().join("restream.toml");
        std::fs::write(&config, settings.to_toml().unwrap()).unwrap();
        let aws_env = if aws.is_some() {
            crate::emulators::aws_env()
        } else {
            Vec::new()
        };
        let env = base_urls
            .into_iter()
            .chain(aws_env)
            .chain(opts.env)
            .collect();
        let log = dir.path().join("backend.log");
        let inner = layout
            .start(upstream, restream(config, env, log))
            .await
            .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
        Stack { aws, inner }
    }
}

/// Smallest and largest gap between consecutive request times.
pub fn gaps(times: &[Instant]) -> (Duration, Duration) {
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    (
        gaps.iter().copied().min().unwrap_or(Duration::MAX),
        gaps.iter().copied().max().unwrap_or(Duration::ZERO),
    )
}
