//! Tools for fetcher authors: `restream fetchers list | run | new`.

mod check;
mod scaffold;

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use crate::channel::ChannelId;
use crate::config::{Settings, StoreKind};
use crate::fetcher::{FetchOutcome, FetchRequest, FetcherEntry, Keys};
use crate::poller::{self, ChannelState, PlanInput, Report};
use crate::startup::{self, load_registry_reporting};
use crate::store::{ItemStore, RedbStore};

pub use check::{check, check_channel_text, CheckReport};
pub use scaffold::new_fetcher;

/// A table of every fetcher found: channel, params, interval, and whether it loaded.
pub async fn list(settings: &Settings) -> anyhow::Result<String> {
    let (registry, report) = load_registry_reporting(settings).await?;
    let mut out = String::new();
    writeln!(
        out,
        "{:<22} {:<26} {:>8}  {:<40} STATUS",
        "CHANNEL", "SOURCE", "INTERVAL", "PARAMS"
    )?;
    for (label, outcome) in report {
        match outcome {
            Ok(name) => {
                let entry = registry.get(&name).expect("loaded");
                let m = &entry.metadata;
                // A push channel is published to: no interval.
                let interval = match entry.fetcher.push() {
                    Some(_) => "push".to_string(),
                    None => format!("{}s", m.poll_interval.as_secs_f64()),
                };
                let params: Vec<String> = m
                    .params
                    .declared()
                    .iter()
                    .map(|(k, p)| match (&p.default, p.required) {
                        (_, true) => format!("{k} (required)"),
                        (Some(d), _) => format!("{k}={d}"),
                        (None, _) => k.clone(),
                    })
                    .collect();
                let params = if m.params.is_free() {
                    "(free-form)".to_string()
                } else if params.is_empty() {
                    "-".to_string()
                } else {
                    params.join(", ")
                };
                writeln!(
                    out,
                    "{:<22} {:<26} {:>8}  {:<40} ok",
                    name, label, interval, params
                )?;
            }
            Err(why) => writeln!(
                out,
                "{:<22} {:<26} {:>8}  {:<40} {}",
                "-", label, "-", "-", why
            )?,
        }
    }
    Ok(out)
}

/// One fetch of `name` with `params`, printed with what change detection would classify
/// against the stored state (nothing is written).
pub async fn run(
    settings: &Settings,
    name: &str,
    params: &[(String, String)],
    state: Option<Value>,
) -> anyhow::Result<String> {
    let (registry, _) = load_registry_reporting(settings).await?;
    let entry = registry.get(name).ok_or_else(|| {
        anyhow!(
            "unknown channel {name:?}; available: {}",
            registry.names().collect::<Vec<_>>().join(", ")
        )
    })?;
    if entry.fetcher.push().is_some() {
        anyhow::bail!(
            "{name} is a push channel: producers publish to it (`restream publish {name}`), nothing is fetched"
        );
    }
    let channel = channel_of(name, params, entry)?;
    let aws = crate::aws::Aws::new(&settings.aws);
    let keys = keys_of(settings, &aws, name).await?;
    let (mut stored_note, stored) = stored_state(settings, &aws, &channel).await;
    let params = channel.params();
    let outcome = entry
        .fetcher
        .fetch(FetchRequest {
            channel: name,
            params: &params,
            keys: &keys,
            state: state.as_ref(),
        })
        .await?;
    let mut out = String::new();
    writeln!(out, "channel   {channel}")?;
    if outcome.not_modified {
        writeln!(out, "upstream  304 not modified: unchanged")?;
        return Ok(out);
    }
    let items = outcome.items.clone();
    writeln!(out, "fetched   {}", fetched(&outcome))?;
    // The poller's own decision; the store's size limit does not apply to a dry run.
    let input = PlanInput {
        channel: &channel,
        id_field: &entry.metadata.id_field,
        max_item_bytes: usize::MAX,
        now: 0,
        fence: None,
    };
    let report = poller::plan(&stored, outcome, &input).report;
    if stored.items.is_empty() {
        stored_note.push_str(" (a first poll is sent as one snapshot)");
    }
    writeln!(out, "against   {stored_note}")?;
    describe(&mut out, &report, &entry.metadata.id_field)?;
    writeln!(out, "items")?;
    writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
    Ok(out)
}

/// The API keys of channel `name`.
async fn keys_of(settings: &Settings, aws: &crate::aws::Aws, name: &str) -> anyhow::Result<Keys> {
    let done = tokio_util::sync::CancellationToken::new();
    let keys = startup::key_store(settings, aws, &done)
        .await?
        .keys_for(name)
        .await;
    done.cancel();
    Ok(keys?)
}

/// What a fetch returned, in one line.
fn fetched(outcome: &FetchOutcome) -> String {
    format!(
        "{} items (complete: {}), {} entries not objects, state: {}",
        outcome.items.len(),
        outcome.complete,
        outcome.skipped_non_objects,
        outcome
            .state
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_else(|| "none".into())
    )
}

/// The channel id `name` with command-line `params`, checked against its declaration.
fn channel_of(
    name: &str,
    params: &[(String, String)],
    entry: &FetcherEntry,
) -> anyhow::Result<ChannelId> {
    let raw: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    ChannelId::from_request_with(name, Some(&Value::Object(raw)), &entry.metadata.params)
        .map_err(|e| anyhow!("invalid params for {name}: {e}"))
}

/// What the poll would change, by item id.
fn describe(out: &mut String, report: &Report, id_field: &str) -> std::fmt::Result {
    writeln!(out, "new       {:?}", report.new)?;
    writeln!(out, "updated   {:?}", report.updated)?;
    writeln!(out, "removed   {:?}", report.removed)?;
    writeln!(out, "unchanged {}", report.unchanged)?;
    if !report.bad_ids.is_empty() || report.duplicates > 0 {
        let bad: Vec<String> = report
            .bad_ids
            .iter()
            .map(|(index, problem)| format!("{index} ({})", problem.reason()))
            .collect();
        writeln!(
            out,
            "problems  entries without a usable {:?}: [{}]; duplicate ids: {}",
            id_field,
            bad.join(", "),
            report.duplicates
        )?;
    }
    Ok(())
}

/// The channel's stored state, or an empty one with a note on why.
async fn stored_state(
    settings: &Settings,
    aws: &crate::aws::Aws,
    channel: &ChannelId,
) -> (String, ChannelState) {
    let opened: anyhow::Result<std::sync::Arc<dyn ItemStore>> = match &settings.store.kind {
        StoreKind::Memory => return ("an empty store".into(), ChannelState::default()),
        StoreKind::Embedded { path } if !path.exists() => {
            return ("an empty store".into(), ChannelState::default())
        }
        // A running service holds the file's lock: then this fails and says so.
        StoreKind::Embedded { path } => RedbStore::open(path, settings.store.log_capacity)
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn ItemStore>)
            .map_err(Into::into),
        StoreKind::Dynamodb(_) => startup::item_store(settings, aws).await,
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            return (
                format!("an empty store (the store is unavailable: {e:#})"),
                ChannelState::default(),
            )
        }
    };
    match store.load(channel).await {
        Ok((meta, items)) => (
            format!("the stored state: seq {}, {} items", meta.seq, items.len()),
            ChannelState::from_loaded(meta, items),
        ),
        Err(e) => (
            format!("an empty store (cannot read it: {e})"),
            ChannelState::default(),
        ),
    }
}

/// Parses `k=v` command-line params.
pub fn parse_param(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("params are written key=value, got {s:?}"),
    }
}

/// Parses a `--state` JSON value.
pub fn parse_state(s: &str) -> anyhow::Result<Value> {
    serde_json::from_str(s).context("--state must be JSON")
}
