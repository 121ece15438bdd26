//! Test stack: a real Pushpin, the real `restream` binary, a fake upstream HTTP server that the
//! real fetchers in `functions/` read, and real WebSocket clients.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
pub use prometheus_parse::Scrape;
use prometheus_parse::Value as Sample;
use restream::config::{
    DynamodbSettings, FetcherKind, KeysSettings, PublishVia, Settings, StoreKind,
    DEFAULT_DYNAMODB_LOG_TTL,
};
use restream::pushpin::{PushpinOptions, PushpinProcess};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const POLL_INTERVAL: f64 = 2.0;

/// A local port nobody is listening on.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Five consecutive free ports for Pushpin's ZeroMQ and HTTP publish sockets, below Linux's
/// ephemeral range (32768+), so no outgoing connection or port-0 listener (the emulators, the
/// Lambda runtime servers) can take one between this check and Pushpin's start.
pub fn free_port_block() -> u16 {
    for _ in 0..200 {
        let base = 20000 + (rand_u32() % 12000) as u16;
        let all_free = (0..5).all(|i| StdListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of 5 free ports");
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ (std::process::id() << 16)
}

/// What the fake upstream serves and what it was asked.
#[derive(Default)]
pub struct UpstreamState {
    /// Bumped by tests to make upstream data change.
    pub generation: u64,
    /// Request path (with query) → arrival times.
    pub requests: HashMap<String, Vec<Instant>>,
    /// Path prefix → exact JSON body to serve instead of the generated one.
    pub bodies: HashMap<String, Value>,
    /// Path prefixes answered with 500 and a body echoing the request (as some APIs do).
    pub failing: Vec<String>,
    /// Path prefix → (answers left, seconds): answered 429 with `Retry-After: seconds`.
    pub throttled: HashMap<String, (u32, u64)>,
    /// `Authorization` header values received, in order.
    pub authorizations: Vec<String>,
    /// Requests that carried `If-None-Match`, and how many of those got a 304.
    pub conditional: usize,
    pub not_modified: usize,
    /// Path prefix → how long to hold each answer.
    pub delays: HashMap<String, Duration>,
}

/// A fake USGS + Open-Meteo server on loopback.
#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<UpstreamState>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move { serve_one(sock, st).await });
            }
        });
        Upstream { addr, state }
    }

    /// Serves `body` for every path starting with `prefix` from now on.
    pub fn set_body(&self, prefix: &str, body: Value) {
        self.state
            .lock()
            .unwrap()
            .bodies
            .insert(prefix.to_string(), body);
    }

    /// Answers every path starting with `prefix` with a 500 that echoes the request path.
    pub fn fail(&self, prefix: &str) {
        self.state.lock().unwrap().failing.push(prefix.to_string());
    }

    /// Answers the next `times` requests under `prefix` with 429 and `Retry-After: seconds`.
    pub fn throttle(&self, prefix: &str, times: u32, seconds: u64) {
        self.state
            .lock()
            .unwrap()
            .throttled
            .insert(prefix.to_string(), (times, seconds));
    }

    /// Holds every answer under `prefix` for `delay` (a slow upstream).
    pub fn delay(&self, prefix: &str, delay: Duration) {
        self.state
            .lock()
            .unwrap()
            .delays
            .insert(prefix.to_string(), delay);
    }

    /// Serves a USGS feed with exactly these features.
    pub fn set_quakes(&self, feed: &str, features: Vec<Value>) {
        self.set_body(
            &format!("/earthquakes/feed/v1.0/summary/{feed}.geojson"),
            json!({"type": "FeatureCollection", "features": features}),
        );
    }

    pub fn bump(&self) -> u64 {
        let mut s = self.state.lock().unwrap();
        s.generation += 1;
        s.generation
    }

    /// Request times for every path containing `needle`.
    pub fn requests(&self, needle: &str) -> Vec<Instant> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<_> = s
            .requests
            .iter()
            .filter(|(p, _)| p.contains(needle))
            .flat_map(|(_, t)| t.iter().copied())
            .collect();
        v.sort();
        v
    }

    /// (requests with If-None-Match, of which answered 304).
    pub fn conditional(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.conditional, s.not_modified)
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.state.lock().unwrap().authorizations.clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .keys()
            .cloned()
            .collect()
    }
}

async fn serve_one(mut sock: TcpStream, state: Arc<Mutex<UpstreamState>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let authorization = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let answer = {
        let mut s = state.lock().unwrap();
        s.authorizations.extend(authorization);
        s.requests
            .entry(path.clone())
            .or_default()
            .push(Instant::now());
        let throttled = s
            .throttled
            .iter_mut()
            .find(|(p, (left, _))| path.starts_with(p.as_str()) && *left > 0)
            .map(|(_, limit)| {
                limit.0 -= 1;
                limit.1
            });
        if let Some(seconds) = throttled {
            Err(seconds)
        } else {
            let fixed = s
                .bodies
                .iter()
                .find(|(p, _)| path.starts_with(p.as_str()))
                .map(|(_, b)| b.to_string());
            let failing = s.failing.iter().any(|p| path.starts_with(p.as_str()));
            Ok((
                s.generation,
                if failing {
                    Some(format!("error for {path}"))
                } else {
                    fixed
                },
                failing,
            ))
        }
    };
    let delay = {
        let s = state.lock().unwrap();
        s.delays
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
            .map(|(_, d)| *d)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (generation, fixed, failing) = match answer {
        Ok(answer) => answer,
        Err(seconds) => {
            let resp = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {seconds}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
            return;
        }
    };
    let (mut status, mut body) = match fixed {
        Some(body) if failing => ("500 Internal Server Error", body),
        Some(body) => ("200 OK", body),
        None => respond(&path, generation),
    };
    // Like a static file server: an ETag per content, and 304 when the client has it.
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        format!("\"{:x}\"", h.finish())
    };
    let if_none_match = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("if-none-match: ")
                .or_else(|| l.strip_prefix("If-None-Match: "))
        })
        .map(str::trim);
    if let Some(tag) = if_none_match {
        let mut s = state.lock().unwrap();
        s.conditional += 1;
        if status == "200 OK" && tag == etag {
            s.not_modified += 1;
            status = "304 Not Modified";
            body = String::new();
        }
    }
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn respond(path: &str, generation: u64) -> (&'static str, String) {
    if let Some(rest) = path.strip_prefix("/earthquakes/feed/v1.0/summary/") {
        let feed = rest.trim_end_matches(".geojson");
        // One quake per generation so far: every bump adds exactly one new item.
        let features: Vec<Value> = (0..=generation)
            .map(|g| json!({"type": "Feature", "id": format!("{feed}-g{g}"), "properties": {"mag": 2.5, "place": format!("gen {g}")}}))
            .collect();
        return (
            "200 OK",
            json!({"type": "FeatureCollection", "features": features}).to_string(),
        );
    }
    if path.starts_with("/v1/forecast") {
        // The single current-weather item changes with every generation.
        let body = json!({
            "current": {"time": "2026-11-22T10:00", "temperature_2m": generation as f64, "wind_speed_10m": 3.0},
            "current_units": {"temperature_2m": "°C"}
        });
        return ("200 OK", body.to_string());
    }
    if path.starts_with("/budgeted/") {
        return ("200 OK", json!([{"id": 1}]).to_string());
    }
    ("404 Not Found", json!({"error": "not found"}).to_string())
}

/// The `restream` binary running as a child process.
pub struct Backend {
    child: Option<tokio::process::Child>,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub addr: SocketAddr,
}

impl Backend {
    /// Starts `restream serve --config config` with `env`, logging to `log`, and waits until
    /// `addr` answers `/healthz`.
    pub async fn launch(
        config: PathBuf,
        env: Vec<(String, String)>,
        log: PathBuf,
        addr: SocketAddr,
    ) -> Backend {
        let mut backend = Backend {
            child: None,
            config,
            env,
            log,
            addr,
        };
        backend.spawn().await;
        backend
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restream"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "info,restream=debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(self.addr).await {
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await;
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out).await;
                if out.starts_with(b"HTTP/1.1 200") || out.starts_with(b"HTTP/1.0 200") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("backend did not become healthy; log: {}", self.log_text());
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Pushpin + backend + fake upstream, all on loopback, stopped on drop.
pub struct Stack {
    pub backend: Backend,
    pub upstream: Upstream,
    /// Held so Pushpin stops when the stack is dropped.
    _pushpin: PushpinProcess,
    pub ws_url: String,
    /// Pushpin's public port as `http://127.0.0.1:port`: the HTTP API and SSE.
    pub http_url: String,
    /// The emulators behind the AWS profile.
    pub aws: Option<AwsStack>,
    _dir: tempfile::TempDir,
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
        std::fs::write(dir.join(name), text).unwrap();
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
        let dir = tempfile::Builder::new()
            .prefix("rs")
            .tempdir_in("/tmp")
            .unwrap();
        let upstream = Upstream::start().await;
        let backend_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let public: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut options = PushpinOptions::new(
            public,
            backend_addr,
            free_port_block(),
            dir.path().join("pp"),
        );
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
        let base_urls: Vec<(String, String)> =
            ["USGS_BASE_URL", "NYT_BASE_URL", "OPEN_METEO_BASE_URL"]
                .into_iter()
                .map(|k| (k.to_string(), base.clone()))
                .collect();
        let aws = match &opts.aws {
            Some(aws) => {
                let env: Vec<_> = base_urls.iter().cloned().chain(opts.env.clone()).collect();
                Some(AwsStack::start(dir.path(), aws, &env).await)
            }
            None => None,
        };
        let mut settings = Settings {
            pushpin: restream::config::Pushpin {
                publish: match opts.publish {
                    "zmq" => PublishVia::Zmq,
                    "http" => PublishVia::Http,
                    other => panic!("publish = {other:?}"),
                },
                zmq_push_specs: vec![options.zmq_push_spec()],
                http_publish_urls: vec![options.http_publish_url()],
                stats_specs: vec![options.stats_spec()],
            },
            ..Settings::default()
        };
        settings.server.listen = backend_addr;
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
        let config = dir.path().join("restream.toml");
        std::fs::write(&config, settings.to_toml().unwrap()).unwrap();
        let pushpin = tokio::task::spawn_blocking(move || PushpinProcess::start(options))
            .await
            .unwrap()
            .expect("pushpin starts");
        let aws_env = if aws.is_some() {
            crate::emulators::aws_env()
        } else {
            Vec::new()
        };
        let mut backend = Backend {
            child: None,
            config,
            env: base_urls
                .into_iter()
                .chain(aws_env)
                .chain(opts.env)
                .collect(),
            log: dir.path().join("backend.log"),
            addr: backend_addr,
        };
        backend.spawn().await;
        Stack {
            backend,
            upstream,
            _pushpin: pushpin,
            ws_url: format!("ws://{public}/ws"),
            http_url: format!("http://{public}"),
            aws,
            _dir: dir,
        }
    }
}

/// A WebSocket client connected through Pushpin.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects and consumes the `ready` message.
    pub async fn connect(url: &str) -> Client {
        let mut last = None;
        for _ in 0..5 {
            match tokio_tungstenite::connect_async(url).await {
                Ok((ws, _)) => {
                    let mut c = Client { ws };
                    let ready = c
                        .recv(Duration::from_secs(10))
                        .await
                        .expect("ready message");
                    assert_eq!(ready["type"], "ready", "{ready}");
                    return c;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        panic!("cannot connect to {url}: {last:?}");
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next JSON text message, or None on timeout.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                Message::Text(t) => {
                    return Some(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next frame that is not a text message (pong, close), skipping text messages.
    pub async fn next_non_text(&mut self, timeout: Duration) -> Message {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => continue,
                Ok(Some(Ok(m))) => return m,
                other => panic!("connection ended or timed out: {other:?}"),
            }
        }
    }

    /// Receives until a message of `kind` arrives; returns it and everything skipped.
    pub async fn recv_type(&mut self, kind: &str, timeout: Duration) -> (Value, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(v) if v["type"] == kind => return (v, skipped),
                Some(v) => skipped.push(v),
                None => panic!("no {kind} message within {timeout:?}; got {skipped:?}"),
            }
        }
    }

    /// Sends a request and returns the first reply that is not a channel event.
    pub async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        loop {
            let m = self.recv(Duration::from_secs(10)).await.expect("a reply");
            if !matches!(
                m["type"].as_str(),
                Some("snapshot" | "new" | "updated" | "removed")
            ) {
                return m;
            }
        }
    }

    pub async fn subscribe(&mut self, channel: &str, params: Value) -> Value {
        let reply = self
            .request(json!({"action": "subscribe", "channel": channel, "params": params}))
            .await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }
}

/// Largest and smallest gap between consecutive request times.
pub fn gaps(times: &[Instant]) -> (Duration, Duration) {
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    (
        gaps.iter().copied().min().unwrap_or(Duration::MAX),
        gaps.iter().copied().max().unwrap_or(Duration::ZERO),
    )
}

/// A GET through Pushpin (or to the backend): status and JSON body.
pub async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"));
    (status, body)
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A plain streaming HTTP client reading an SSE stream through Pushpin, like `curl -N`.
pub struct SseClient {
    response: reqwest::Response,
    buf: String,
    /// Comment lines seen (keep-alives and the preamble).
    pub comments: usize,
}

impl SseClient {
    /// Opens `path` (with query) on `base`; `last_event_id` is sent as the reconnect header.
    pub async fn connect(base: &str, path: &str, last_event_id: Option<&str>) -> SseClient {
        let mut request = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "GET {path}"
        );
        assert!(
            !response.headers().contains_key("grip-hold"),
            "Pushpin consumes the GRIP headers"
        );
        SseClient {
            response,
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, or None on timeout or end of stream.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = ("message".to_string(), None, Vec::new());
                for line in block.lines() {
                    match line.split_once(": ").unwrap_or((line, "")) {
                        ("event", v) => event = v.to_string(),
                        ("id", v) => id = Some(v.to_string()),
                        ("data", v) => data.push(v.to_string()),
                        _ if line.starts_with(':') => self.comments += 1,
                        _ => {}
                    }
                }
                if data.is_empty() {
                    continue; // A comment or `retry:` block.
                }
                let data = serde_json::from_str(&data.join("\n")).expect("events carry JSON");
                return Some(SseEvent { event, id, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
        }
    }

    /// Reads until an event of `kind`; returns it and everything before it.
    pub async fn next_of(&mut self, kind: &str, timeout: Duration) -> (SseEvent, Vec<SseEvent>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) if e.event == kind => return (e, skipped),
                Some(e) => skipped.push(e),
                None => panic!("no {kind} event within {timeout:?}; got {skipped:?}"),
            }
        }
    }
}

/// `/metrics` of a backend, parsed as Prometheus exposition format.
pub async fn scrape(url: &str) -> Scrape {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition format")
}

/// The sum of the samples of `name` whose labels include `labels` (a histogram counts its
/// observations).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => *v,
            Sample::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Sample::Summary(_) => panic!("no summaries expected"),
        })
        .sum()
}
