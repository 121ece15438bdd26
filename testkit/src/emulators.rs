//! Local AWS emulators, started on free loopback ports and stopped by PID on drop: `moto`
//! (DynamoDB, S3) from the project's `.venv` (`scripts/install-deps.sh` installs it) and
//! `scripts/minilambda.py` (the Lambda Invoke and ListFunctions API running the Python handlers
//! of an Apex project with AWS's own runtime client, `awslambdaric`); and the settings and
//! credentials that point clients at them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use restream::config::AwsSettings;

use crate::ports::free_port;
use crate::process::{Process, Spec};
use crate::{repo_root, Error};

const INSTALL_HINT: &str =
    "run `bash scripts/install-deps.sh --tests` (it installs the AWS emulators in .venv)";

/// A program from the project's virtualenv.
pub fn venv_bin(name: &str) -> Result<PathBuf, Error> {
    let path = repo_root().join(".venv/bin").join(name);
    if !path.exists() {
        return Err(Error::Missing {
            path,
            hint: INSTALL_HINT,
        });
    }
    Ok(path)
}

/// An emulator process; its output goes to a temp file whose tail is shown when it fails.
pub struct Server {
    process: Process,
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `spec` (already told its `port`) and waits until `ready_path` answers 200.
    fn start(mut spec: Spec, port: u16, ready_path: &str) -> Result<Server, Error> {
        let dir = tempfile::tempdir().map_err(Error::io("a temp dir for an emulator"))?;
        spec.log = dir.path().join(format!("{}.log", spec.what));
        spec.die_with_parent = true;
        let mut process = Process::spawn(&spec)?;
        process.wait_ready_blocking(
            ([127, 0, 0, 1], port).into(),
            ready_path,
            Duration::from_secs(60),
        )?;
        Ok(Server {
            process,
            url: format!("http://127.0.0.1:{port}"),
            log: spec.log,
            _dir: dir,
        })
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// moto's server mode: DynamoDB and S3 (and more) on one port, in memory, one request at a
/// time (`scripts/moto_server.py` says why).
pub fn try_start_moto() -> Result<Server, Error> {
    let port = free_port();
    let spec = Spec::new("moto", venv_bin("python")?, PathBuf::new())
        .arg(repo_root().join("scripts/moto_server.py"))
        .arg("-H")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string());
    Server::start(spec, port, "/moto-api/")
}

/// [`try_start_moto`], panicking with the reason.
pub fn start_moto() -> Server {
    try_start_moto().unwrap_or_else(|e| panic!("{e}"))
}

/// minilambda serving the Apex project at `root` (`project.json` + `functions/<dir>/`), its
/// workers inheriting `env`; ListFunctions pages hold `page_size` functions.
pub fn try_start_minilambda_paged(
    root: &Path,
    env: &[(String, String)],
    page_size: usize,
) -> Result<Server, Error> {
    let port = free_port();
    let mut spec = Spec::new("minilambda", venv_bin("python")?, PathBuf::new())
        .arg(repo_root().join("scripts/minilambda.py"))
        .arg("--root")
        .arg(root)
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg(port.to_string())
        .arg("--page-size")
        .arg(page_size.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    spec.env.extend(env.iter().cloned());
    Server::start(spec, port, "/health")
}

/// [`try_start_minilambda_paged`], panicking with the reason.
pub fn start_minilambda_paged(root: &Path, env: &[(String, String)], page_size: usize) -> Server {
    try_start_minilambda_paged(root, env, page_size).unwrap_or_else(|e| panic!("{e}"))
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
