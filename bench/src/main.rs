//! `restream-bench`: reproducible benchmarks of restream with a real Pushpin, the backend binary
//! and a local fake upstream. Each scenario prints one JSON line; `smoke` runs every scenario
//! small and fails unless each completes with exactly one upstream call per poll.
//!
//! - [`fanout`] — scenarios 1 and 2: subscribers on one channel, latency, overhead ratio.
//! - [`subscribe`] — scenario 3: subscribe/unsubscribe throughput vs a no-op WOH responder.
//! - [`scale`] — scenario 4: thousands of active channels: RSS, CPU, scheduler drift.
//! - [`store_cost`] — scenario 5: store writes per poll, embedded and DynamoDB.
//! - [`classify`] — scenario 6: change-detection throughput (criterion: `benches/`).
//! - [`publish`] — scenario 7: publishing to a push channel: throughput, and latency beside a
//!   direct Pushpin publish.
//! - [`history`] — scenario 8: history pages over 100 channels of 10,000 events (coalesced
//!   and per channel) from a seeded store ([`history_seed`]).
//! - [`workers`] — scenario 9: process fetchers on warm workers beside one process per call:
//!   polls per second, and 300 held channels of one fetcher.
//! - [`stack`], [`measure`] — the parts every scenario uses; the fake upstream, the clients and
//!   the processes come from `restream_testkit`.

mod classify;
mod fanout;
mod history;
mod history_seed;
mod measure;
mod null_woh;
mod publish;
mod scale;
mod stack;
mod store_cost;
mod subscribe;
mod workers;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "restream-bench",
    about = "restream benchmarks (see bench/README.md)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Scenarios 1+2: subscribers on one channel; upstream calls per interval, latency p50/p99,
    /// and the overhead ratio against a direct publish to the same Pushpin.
    Fanout {
        /// Subscriber counts to run, one after another.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000,5000")]
        subscribers: Vec<usize>,
        /// Upstream changes measured per count.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Unmeasured rounds run first, for this many seconds after the last subscribe: the
        /// default waits out the first keep-alive of every connection (the backend's default
        /// 30 s `server.keep_alive_interval`), which the subscribe burst sets off together.
        #[arg(long, default_value_t = 32.0)]
        warm_up: f64,
    },
    /// Scenario 3: subscribe/unsubscribe messages per second, restream vs a no-op WOH responder.
    Subscribe {
        /// Clients, each with one request in flight at a time. Keep it under 100: Pushpin
        /// 1.36 resets connections once about 100 WOH requests are queued.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Seconds of each side in all, split into `rounds` alternating turns. On a shared
        /// 2-vCPU VM one 5-second turn's rate moves by about ±10 %, so a run needs many turns
        /// (bench/README.md, scenario 3).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        #[arg(long, default_value_t = 12)]
        rounds: usize,
    },
    /// Scenario 4: many active channels: backend RSS, CPU, scheduler drift.
    Scale {
        #[arg(long, default_value_t = 10_000)]
        channels: usize,
        #[arg(long, default_value_t = 60.0)]
        interval: f64,
        #[arg(long, default_value_t = 120.0)]
        seconds: f64,
        /// The fake upstream closes every connection after its answer (one TCP connection per
        /// poll) instead of keeping it open as APIs do.
        #[arg(long)]
        close_connections: bool,
        /// Pause between batches of 10 connections subscribing, ms: a backend busy with tens of
        /// thousands of first polls answers subscribes slower, and Pushpin resets connections
        /// once ~100 requests queue toward it (use ~200 for 100,000 channels).
        #[arg(long, default_value_t = 0)]
        batch_pause_ms: u64,
        /// Channels per client connection (the backend's `server.max_subscriptions_per_connection`
        /// is raised to match): 100,000 channels at 20 each are 5,000 WebSocket connections.
        #[arg(long, default_value_t = 20)]
        per_connection: usize,
    },
    /// Scenario 5: store writes per poll (unchanged, 1 %, 100 % changed), embedded and DynamoDB.
    StoreCost {
        #[arg(long, default_value_t = 1000)]
        items: usize,
        /// Skip DynamoDB (no moto in .venv).
        #[arg(long)]
        no_dynamodb: bool,
    },
    /// Scenario 5b: DynamoDB write units per hour spent persisting one upstream budget shared
    /// by N channels (moto).
    BudgetCost {
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10000])]
        channels: Vec<usize>,
        /// Seconds measured per channel count.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// DynamoDB write units an hour to keep N channels leased in cluster mode (moto).
    LeaseCost {
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10000])]
        channels: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Seconds measured per channel count, once every lease is taken.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// The lease TTL (cluster.lease_ttl_secs; default 10).
        #[arg(long, default_value_t = 10.0)]
        ttl_secs: f64,
    },
    /// Scenario 6: items classified per second (a quick loop; `cargo bench` runs criterion).
    Classify {
        #[arg(long, default_value_t = 10_000)]
        items: usize,
        /// Only this case (`unchanged`, `changed_1pct`, `changed_100pct`,
        /// `unchanged_legacy_hashes`), e.g. for `perf stat`/`perf record` of one case.
        #[arg(long)]
        case: Option<String>,
        /// Exactly this many timed repetitions per case instead of ~1 s of them (comparable
        /// instruction counts under `perf stat`).
        #[arg(long)]
        repetitions: Option<u64>,
    },
    /// Scenario 7: a push channel with subscribers: publish throughput (items/s) and
    /// publish→subscriber latency for batches of 1 and 100, beside a direct Pushpin publish.
    Publish {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Latency rounds (each: a batch of 1 and a batch of 100, both paths).
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Seconds per throughput setting.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent producers of the concurrent throughput settings.
        #[arg(long, default_value_t = 4)]
        producers: usize,
    },
    /// Scenario 8: history pages (limit 50) over channels seeded with events: coalesced
    /// (`GET /history?channel=…` naming every channel) and per channel, p50/p99 latency.
    History {
        #[arg(long, default_value_t = 100)]
        channels: usize,
        /// Events per channel.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// Requests per measurement.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Walk the coalesced history to its end and check it returns every event once.
        #[arg(long)]
        walk_all: bool,
    },
    /// Scenario 9: a process fetcher on warm workers beside one process per call: polls per
    /// second, and held channels (first polls, a new client's snapshot).
    Workers {
        /// Seconds per throughput measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Throughput measurements per mode (alternating; the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Channels fetched at once in the throughput part.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Held channels (20 per connection) and their poll interval.
        #[arg(long, default_value_t = 300)]
        channels: usize,
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Every scenario, small: completes in seconds and checks one upstream call per poll.
    Smoke,
    /// The no-op WebSocket-over-HTTP responder scenario 3 compares against (started by it).
    #[command(hide = true)]
    NullWoh {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn emit(result: &serde_json::Value) {
    println!("{result}");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    measure::raise_open_files_limit();
    match Cli::parse().scenario {
        Scenario::Fanout {
            subscribers,
            rounds,
            warm_up,
        } => {
            for n in subscribers {
                let warm_up = std::time::Duration::from_secs_f64(warm_up);
                emit(&fanout::run(n, rounds, warm_up).await?);
            }
        }
        Scenario::Subscribe {
            connections,
            seconds,
            rounds,
        } => emit(&subscribe::run(connections, seconds, rounds).await?),
        Scenario::Scale {
            channels,
            interval,
            seconds,
            close_connections,
            batch_pause_ms,
            per_connection,
        } => emit(
            &scale::run(scale::Run {
                channels,
                interval,
                seconds,
                close_connections,
                batch_pause: std::time::Duration::from_millis(batch_pause_ms),
                per_connection,
            })
            .await?,
        ),
        Scenario::StoreCost { items, no_dynamodb } => {
            emit(&store_cost::run(items, !no_dynamodb).await?)
        }
        Scenario::BudgetCost { channels, seconds } => {
            emit(&store_cost::budget::run(&channels, seconds).await?)
        }
        Scenario::LeaseCost {
            channels,
            replicas,
            seconds,
            ttl_secs,
        } => emit(
            &store_cost::lease::run(
                &channels,
                replicas,
                seconds,
                std::time::Duration::from_secs_f64(ttl_secs),
            )
            .await?,
        ),
        Scenario::Classify {
            items,
            case,
            repetitions,
        } => emit(&classify::run_with(items, case.as_deref(), repetitions)?),
        Scenario::Publish {
            subscribers,
            rounds,
            seconds,
            producers,
        } => emit(
            &publish::run(publish::Config {
                subscribers,
                rounds,
                seconds,
                producers,
            })
            .await?,
        ),
        Scenario::History {
            channels,
            events,
            requests,
            limit,
            walk_all,
        } => emit(
            &history::run(history::Config {
                channels,
                events,
                requests,
                limit,
                walk_all,
            })
            .await?,
        ),
        Scenario::Workers {
            seconds,
            rounds,
            concurrency,
            channels,
            interval,
        } => emit(
            &workers::run(workers::Config {
                seconds,
                rounds,
                concurrency,
                channels,
                interval,
            })
            .await?,
        ),
        Scenario::Smoke => smoke().await?,
        Scenario::NullWoh { listen } => null_woh::serve(listen).await?,
    }
    Ok(())
}

/// Each scenario at a size that takes seconds; fails loudly on anything wrong.
async fn smoke() -> anyhow::Result<()> {
    let fan = fanout::run(20, 2, std::time::Duration::ZERO).await?;
    emit(&fan);
    anyhow::ensure!(
        fan["max_upstream_calls_per_interval"] == 1,
        "fan-out: expected exactly one upstream call per poll: {fan}"
    );
    emit(&subscribe::run(4, 1.0, 2).await?);
    let scale = scale::run(scale::Run {
        channels: 100,
        interval: 2.0,
        seconds: 5.0,
        close_connections: false,
        batch_pause: std::time::Duration::ZERO,
        // Above the default limit of 20: the backend's limit follows the option.
        per_connection: 25,
    })
    .await?;
    emit(&scale);
    anyhow::ensure!(
        scale["max_upstream_calls_per_interval"] == 1,
        "scale: expected exactly one upstream call per channel per poll: {scale}"
    );
    emit(&store_cost::run(100, true).await?);
    let budget = store_cost::budget::run(&[100], 2.0).await?;
    emit(&budget);
    anyhow::ensure!(
        budget["sizes"][0]["stored_item_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0 && b < 1024),
        "budget cost: the saved budget should be one small record: {budget}"
    );
    // 20 leases on 2 replicas, TTL 3 s: no lease is written while held (session leases).
    let leases = store_cost::lease::run(&[20], 2, 2.5, std::time::Duration::from_secs(3)).await?;
    emit(&leases);
    anyhow::ensure!(
        leases["sizes"][0]["steady_lease_writes"] == 0,
        "lease cost: held leases should cost no writes (one heartbeat renews them): {leases}"
    );
    emit(&classify::run(1000)?);
    // Every subscriber receives every published item (the scenario fails otherwise).
    emit(
        &publish::run(publish::Config {
            subscribers: 10,
            rounds: 2,
            seconds: 0.5,
            producers: 2,
        })
        .await?,
    );
    // Warm workers and one-shot processes both serve every held channel.
    let workers = workers::run(workers::Config {
        seconds: 0.5,
        rounds: 1,
        concurrency: 4,
        channels: 20,
        interval: 1.0,
    })
    .await?;
    emit(&workers);
    for mode in ["warm", "oneshot"] {
        anyhow::ensure!(
            workers["held_channels"][mode]["channels_first_polled"] == 20,
            "workers: every held channel is polled ({mode}): {workers}"
        );
    }
    // The coalesced walk returns every seeded event once, in order (it fails otherwise).
    emit(
        &history::run(history::Config {
            channels: 5,
            events: 120,
            requests: 3,
            limit: 50,
            walk_all: true,
        })
        .await?,
    );
    Ok(())
}
