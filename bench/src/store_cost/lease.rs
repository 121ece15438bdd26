//! Lease store cost (cluster mode): DynamoDB write units an hour to keep N channels leased by R
//! replicas, through the real `restream::cluster` code on moto: each replica's `Cluster` on
//! `DynamoLeases` heartbeats (`run_membership`), takes its share of the channels, and keeps each
//! lease with `Cluster::keep`, as the scheduler does. Writes are counted from the requests'
//! items (`restream_testkit::dynamo::write_units`) over a steady window, after every lease is
//! taken and before any is released.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use restream::channel::ChannelId;
use restream::cluster::{Cluster, DynamoLeases, LeaseGuard, Member};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use restream_testkit::dynamo::RequestLog;
use restream_testkit::emulators;

use super::counted_dynamodb;

/// Measures each channel count for `seconds` of steady state, leases of `ttl`.
pub async fn run(
    channels: &[usize],
    replicas: usize,
    seconds: f64,
    ttl: Duration,
) -> anyhow::Result<Value> {
    anyhow::ensure!(replicas > 0, "lease-cost: --replicas must be at least 1");
    let (moto, client, requests) = counted_dynamodb().await?;
    let mut sizes = Vec::new();
    for &n in channels {
        anyhow::ensure!(n > 0, "lease-cost: a channel count must be at least 1");
        sizes.push(measure(&client, &requests, n, replicas, seconds, ttl).await?);
    }
    drop(moto);
    Ok(json!({
        "scenario": "lease_cost",
        "model": "N channels with subscribers, spread over R replicas, each lease kept for the run",
        "replicas": replicas,
        "lease_ttl_secs": ttl.as_secs_f64(),
        "seconds_per_size": seconds,
        "unit": "write units estimated from each write request's item size (1 per started KB), \
                 counted over the steady window and scaled to an hour",
        "before_sessions": "one UpdateItem (1 WCU) per lease per third of the TTL: \
                            N x 3600 / (TTL / 3) an hour, plus membership",
        "emulator": "moto (scripts/moto_server.py, one request at a time)",
        "sizes": sizes,
    }))
}

async fn measure(
    client: &aws_sdk_dynamodb::Client,
    requests: &RequestLog,
    n: usize,
    replicas: usize,
    seconds: f64,
    ttl: Duration,
) -> anyhow::Result<Value> {
    let table = emulators::unique("bench-leases");
    // The item store creates the table (leases share it in production).
    restream::store::DynamoItemStore::connect(client.clone(), &table, 100, ttl * 360, true)
        .await
        .context("cannot create the table")?;
    let stop = CancellationToken::new();
    let mut clusters = Vec::new();
    for r in 0..replicas {
        let id = format!("bench-r{r}");
        let secret = restream::config::Secret::new("bench-secret");
        let leases = DynamoLeases::new(client.clone(), &table, &id, ttl, secret);
        let cluster = Arc::new(Cluster::new(
            Arc::new(leases),
            Member::new(&id, "http://127.0.0.1:9"),
        ));
        cluster.refresh_members().await.context("first heartbeat")?;
        tokio::spawn(cluster.clone().run_membership(stop.clone()));
        clusters.push(cluster);
    }
    requests.clear();
    let taking = Instant::now();
    for i in 0..n {
        let cluster = &clusters[i % replicas];
        let channel = ChannelId::parse(&format!("bench?n={i}")).expect("a valid channel id");
        let held = cluster
            .leases()
            .acquire(&channel)
            .await?
            .with_context(|| format!("{channel} is free, yet not taken"))?;
        let guard = Arc::new(LeaseGuard::new(held, CancellationToken::new()));
        tokio::spawn(cluster.clone().keep(guard, stop.clone()));
    }
    let taking = taking.elapsed().as_secs_f64();
    let (take_writes, take_units) = requests.write_units_for("lease#");
    requests.clear();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (lease_writes, lease_units) = requests.write_units_for("lease#");
    let (member_writes, member_units) = requests.write_units_for("replicas");
    stop.cancel();
    let per_hour = |units: u64| (units as f64 * 3600.0 / elapsed).round();
    let before = n as f64 * 3600.0 / (ttl.as_secs_f64() / 3.0);
    Ok(json!({
        "channels": n,
        "seconds_to_take_every_lease": (taking * 10.0).round() / 10.0,
        "writes_to_take_them": take_writes,
        "write_units_to_take_them": take_units,
        "steady_lease_writes": lease_writes,
        "steady_membership_writes": member_writes,
        "lease_wcu_per_hour": per_hour(lease_units),
        "membership_wcu_per_hour": per_hour(member_units),
        "wcu_per_hour": per_hour(lease_units + member_units),
        "wcu_per_hour_before_sessions": before.round() + per_hour(member_units),
    }))
}
