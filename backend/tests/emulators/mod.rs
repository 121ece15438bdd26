//! Local AWS emulators for tests, started on free loopback ports and stopped by PID on drop:
//! `moto` (DynamoDB, S3) from the project's `.venv` (`scripts/install-deps.sh` installs it) and
//! `scripts/minilambda.py` (the Lambda Invoke and ListFunctions API running the Python handlers
//! of an Apex project with AWS's own runtime client, `awslambdaric`).
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use restream::config::AwsSettings;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("backend/ has a parent")
        .to_path_buf()
}

/// A program from the project's virtualenv; a clear panic when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/install-deps.sh` (it installs the AWS emulators)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) on drop; its output goes to a temp file whose tail is
/// shown when it fails to start.
pub struct Server {
    child: Child,
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `command` (already told its port) and waits until `ready_path` answers 200.
    pub fn start(mut command: Command, port: u16, ready_path: &str, what: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{what}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        server.wait_ready(port, ready_path, what);
        server
    }

    fn wait_ready(&mut self, port: u16, path: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited ({status}): {}", self.log_text());
            }
            if http_ok(port, path) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what} not ready within 60 s: {}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking `GET path` on loopback that answered 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// moto's server mode: DynamoDB and S3 (and more) on one port, in memory, one request at a
/// time (`scripts/moto_server.py` says why).
pub fn start_moto() -> Server {
    let port = free_port();
    let mut command = Command::new(venv_bin("python"));
    command
        .arg(repo_root().join("scripts/moto_server.py"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Server::start(command, port, "/moto-api/", "moto")
}

/// minilambda serving the Apex project at `root` (`project.json` + `functions/<dir>/`), its
/// workers inheriting `env`; ListFunctions pages hold `page_size` functions.
pub fn start_minilambda_paged(root: &Path, env: &[(String, String)], page_size: usize) -> Server {
    let port = free_port();
    let mut command = Command::new(venv_bin("python"));
    command
        .arg(repo_root().join("scripts/minilambda.py"))
        .arg("--root")
        .arg(root)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--page-size", &page_size.to_string()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Server::start(command, port, "/health", "minilambda")
}

/// minilambda with Lambda's own ListFunctions page size (50).
pub fn start_minilambda(root: &Path, env: &[(String, String)]) -> Server {
    start_minilambda_paged(root, env, 50)
}

/// Settings pointing every AWS client at `endpoint` (an emulator).
pub fn aws_settings(endpoint: &str) -> AwsSettings {
    AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_string()),
        ..AwsSettings::default()
    }
}

/// Environment for a child process (the `restream` binary) talking to emulators: fixed test
/// credentials, no instance-metadata probing.
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An SDK config for in-process clients: test credentials, so nothing reads the environment
/// or probes instance metadata.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .test_credentials()
        .region(Region::new(
            settings.region.clone().unwrap_or("us-east-1".into()),
        ))
        .retry_config(restream::aws::retry(settings));
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader.load().await
}

/// An S3 client on `moto` (path-style, as the service builds it) and a new bucket.
pub async fn s3_bucket(moto: &Server) -> (aws_sdk_s3::Client, String) {
    let settings = aws_settings(&moto.url);
    let sdk = sdk_config(&settings).await;
    let s3 = restream::aws::s3(&sdk, &settings);
    let name = unique("keys");
    s3.create_bucket().bucket(&name).send().await.unwrap();
    (s3, name)
}

/// A name no other test uses (tables and buckets live as long as the emulator).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
