//! The `restream` binary: `serve` (production) and `dev` (with its own Pushpin).

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use restream::config::{Settings, SigKey};
use restream::pushpin::{PushpinOptions, PushpinProcess};
use restream::{startup, telemetry};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "restream",
    version,
    about = "Turns polling REST APIs into real-time streams behind Pushpin"
)]
struct Cli {
    /// TOML settings file (defaults, then this file, then RESTREAM_* env vars).
    #[arg(long, short, global = true, env = "RESTREAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the backend behind an existing Pushpin (the default).
    Serve,
    /// Start an isolated Pushpin on loopback, then the backend; Ctrl-C stops both.
    Dev,
    /// Print the effective settings as JSON (secrets redacted) and exit.
    Config,
    /// Exit 0 when the backend at `server.listen` answers `/healthz` (container healthchecks).
    Health,
    /// Print a subscriber or producer token (HS256, signed with the key store's
    /// `_restream.jwt_secret`).
    Token {
        /// A channel it may subscribe to: a name, a canonical id (`name?k=v`), `prefix*` or
        /// `*` (repeatable).
        #[arg(long = "channel", required_unless_present = "publish")]
        channels: Vec<String>,
        /// A push channel it may publish to, same syntax as `--channel` (repeatable).
        #[arg(long = "publish")]
        publish: Vec<String>,
        /// Who it is for (shown in logs).
        #[arg(long)]
        sub: Option<String>,
        /// How long it is valid: 90s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = restream::auth::mint::parse_ttl)]
        ttl: std::time::Duration,
    },
    /// Publish a batch from stdin to a push channel (JSON, or NDJSON with --ndjson) and print
    /// the receipt; see docs/publishing.md.
    Publish(restream::publish_cli::PublishArgs),
    /// Tools for fetcher authors.
    Fetchers {
        #[command(subcommand)]
        command: FetchersCmd,
    },
}

#[derive(Subcommand)]
enum FetchersCmd {
    /// Every fetcher found (code and declarative): channel, params, interval, load status.
    List,
    /// Fetch once and show the items and how change detection would classify them.
    Run {
        /// Channel name, e.g. usgs-earthquakes.
        name: String,
        /// A param, key=value (repeatable).
        #[arg(long = "param", short = 'p', value_parser = restream::authoring::parse_param)]
        params: Vec<(String, String)>,
        /// Opaque fetcher state (JSON) to send, e.g. an ETag from an earlier run.
        #[arg(long, value_parser = restream::authoring::parse_state)]
        state: Option<serde_json::Value>,
    },
    /// Create functions/<name>/ with main.py, recorded test data and a test.
    New {
        /// Channel name, e.g. my-feed.
        name: String,
    },
    /// Install each fetcher folder's requirements.txt into its site-packages/ (pip; skipped
    /// when already built from the same file).
    Install {
        /// Folders (fetcher folders or folders of them); default: fetchers.dir.
        dirs: Vec<std::path::PathBuf>,
        /// Wheels for the Lambda runtime (python3.12, x86_64) instead of this machine.
        #[arg(long = "lambda")]
        for_lambda: bool,
    },
    /// Validate every channel file and fetcher: `path:line: message` per problem, exit 1 if any.
    Check,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    telemetry::init(&settings.log);
    match cli.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => serve(settings).await,
        Cmd::Dev => {
            let options = PushpinOptions {
                connection_subscription_max: settings.server.max_subscriptions_per_connection.get()
                    + 1,
                ..PushpinOptions::new(
                    settings.dev.public_listen,
                    settings.server.listen,
                    settings.dev.pushpin_base_port,
                    settings.dev.run_dir.clone(),
                )
            };
            settings.pushpin.zmq_push_specs = vec![options.zmq_push_spec()];
            settings.pushpin.http_publish_urls = vec![options.http_publish_url()];
            settings.pushpin.stats_specs = vec![options.stats_spec()];
            // A fresh key per run, shared by the two processes only.
            settings.pushpin.sig_key = Some(SigKey::Value(options.sig_key.clone()));
            let pushpin =
                tokio::task::spawn_blocking(move || PushpinProcess::start(options)).await??;
            tracing::info!(
                url = %format!("ws://{}/ws", settings.dev.public_listen),
                pid = pushpin.pid(),
                logs = %pushpin.options().run_dir.display(),
                "pushpin started"
            );
            let result = serve(settings).await;
            drop(pushpin);
            result
        }
        Cmd::Health => restream::startup::check_health(&settings.server.listen).await,
        Cmd::Token {
            channels,
            publish,
            sub,
            ttl,
        } => {
            let token =
                startup::mint_token(&settings, &channels, &publish, sub.as_deref(), ttl).await?;
            println!("{token}");
            Ok(())
        }
        Cmd::Publish(args) => publish(args).await,
        Cmd::Config => {
            println!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
        Cmd::Fetchers { command } => {
            let out = match command {
                FetchersCmd::List => restream::authoring::list(&settings).await?,
                FetchersCmd::Run {
                    name,
                    params,
                    state,
                } => restream::authoring::run(&settings, &name, &params, state).await?,
                FetchersCmd::Install { dirs, for_lambda } => {
                    let dirs = match dirs.is_empty() {
                        true => vec![settings.fetchers.dir.clone()],
                        false => dirs,
                    };
                    let python = &settings.fetchers.python;
                    if !restream::fetcher::deps::install(python, &dirs, for_lambda)? {
                        anyhow::bail!("some fetcher dependencies could not be installed");
                    }
                    String::new()
                }
                FetchersCmd::Check => {
                    let report = restream::authoring::check(&settings).await?;
                    print!("{}", report.text);
                    if report.problems > 0 {
                        anyhow::bail!(
                            "{} problem(s) in channel files or fetchers",
                            report.problems
                        );
                    }
                    String::new()
                }
                FetchersCmd::New { name } => {
                    let dir = restream::authoring::new_fetcher(&settings.fetchers.dir, &name)?;
                    format!(
                        "created {}\nnext: edit main.py and testdata/sample.json, then\n  python3 -m pytest {} -q\n  restream fetchers run {name}\n",
                        dir.display(),
                        dir.display()
                    )
                }
            };
            print!("{out}");
            Ok(())
        }
    }
}

/// `restream publish`: the receipt on stdout; `error: <code>: <message>` on stderr and exit 1.
async fn publish(args: restream::publish_cli::PublishArgs) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Read};
    let body = if args.reads_body() {
        if std::io::stdin().is_terminal() {
            eprintln!("reading the batch from stdin (end with Ctrl-D)");
        }
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the batch from stdin")?;
        Some(body)
    } else {
        None
    };
    match restream::publish_cli::run(&args, body).await {
        Ok(receipt) => {
            println!("{receipt}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.server.listen)
        .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
    listener.set_nonblocking(true)?;
    let shutdown = CancellationToken::new();
    startup::cancel_on_signals(shutdown.clone());
    startup::run(settings, listener, shutdown).await
}
