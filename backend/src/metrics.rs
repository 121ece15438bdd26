//! Prometheus metrics: counters updated where things happen, gauges filled in at scrape time.
//!
//! Labels are bounded: `channel` is a fetcher name (never params), `budget` a key set id
//! (`fetcher:<name>` or a hash of the keys, never a key).

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::budget::WindowUsage;
use crate::demand::Subscribers;
use crate::pushpin::woh::Event;

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    active_channels: IntGauge,
    subscribers: IntGaugeVec,
    pub polls: IntCounterVec,
    pub poll_failures: IntCounterVec,
    pub upstream_latency: HistogramVec,
    pub changes: IntCounterVec,
    pub published: IntCounter,
    pub publish_failures: IntCounter,
    /// Pushpins this replica publishes to: its configured ones and (cluster mode) the ones the
    /// other live replicas advertise.
    pub pushpins: IntGauge,
    budget_used: IntGaugeVec,
    budget_limit: IntGaugeVec,
    woh_requests: IntCounterVec,
    pub sse_streams: IntCounter,
    /// Snapshot requests dropped because a bounded queue was full, by `queue` (`scheduler`,
    /// `poller`, `waiting`): a metric, not a log line per message.
    pub queue_full: IntCounterVec,
    /// Cluster mode: leases acquired, released, lost, refused; snapshot requests handed to their owner.
    pub lease_events: IntCounterVec,
    /// Hardening (issue 17): fetcher processes, oversized bodies, rejected item ids.
    pub fetcher_processes: IntGauge,
    pub fetcher_process_wait: Histogram,
    pub fetcher_process_kills: IntCounterVec,
    // Warm fetcher workers (issue 24).
    /// Calls waiting for a fetcher's worker, by fetcher.
    pub fetcher_queue_depth: IntGaugeVec,
    /// Time a call waited for its fetcher's worker (and a process slot), by fetcher.
    pub fetcher_queue_wait: HistogramVec,
    /// Warm workers running now (capped by fetchers.max_workers).
    pub fetcher_workers: IntGauge,
    /// Warm workers started, recycled and killed, by fetcher, event and reason.
    pub fetcher_worker_events: IntCounterVec,
    pub bodies_too_large: IntCounterVec,
    pub items_rejected: IntCounterVec,
    // Bounded state (issue 17): memory of inactive channels, the read cache, retention.
    /// In-memory entries of inactive channels forgotten, by `what` (`status`, `last_poll`).
    pub state_pruned: IntCounterVec,
    /// Channels whose stored state retention removed (embedded and memory stores' sweep).
    pub store_swept_channels: IntCounter,
    /// Items of an expired DynamoDB channel found without their meta and deleted.
    pub store_orphans_removed: IntCounter,
    /// The items/status API's read cache, by `event` (`hit`, `miss`, `eviction`).
    pub read_cache: IntCounterVec,
    /// Fresh WebSocket subscribes' snapshot cache, by `event` (`inline`, `up_to_date`,
    /// `unwatched`, `resume_owed`, `stored`, `full`, `too_large`).
    pub snapshot_cache: IntCounterVec,
    /// Bytes of snapshot messages the snapshot cache holds (`state.snapshot_cache_bytes`).
    pub snapshot_cache_bytes: IntGauge,
    /// Requests refused for a `Grip-Sig` that does not verify, or none where one is required.
    pub grip_sig_refusals: IntCounterVec,
    /// Requests refused for their `Origin`: HTTP API, CORS preflight, WebSocket handshake.
    pub origin_refusals: IntCounterVec,
    /// `/internal/*` requests without the cluster secret.
    pub cluster_secret_refusals: IntCounter,
    /// Abuse bounds (`abuse`): subscribes and SSE opens refused, by error code and limit.
    pub refusals: IntCounterVec,
    /// Repeated subscribes answered without a second snapshot.
    pub snapshot_resends_skipped: IntCounter,
    /// Channels with subscribers not polled because a channel cap is reached.
    pub pollers_capped: IntCounterVec,
    /// A rate tracker full of live entries, so a new connection or address went untracked.
    pub rate_tracker_full: IntCounterVec,
    rendering: std::sync::Mutex<()>,
    /// Subscribes and requests refused for want of a valid token, by bounded reason.
    pub auth_refusals: IntCounterVec,
    /// Reloads of the token keys (JWT secret, JWKS), by outcome.
    pub auth_key_refreshes: IntCounterVec,
    /// WebSocket connections' tokens found verified already (`hit`) or verified (`miss`).
    pub auth_token_cache: IntCounterVec,
    /// Public keys currently loaded from the JWKS.
    pub auth_jwks_keys: IntGauge,
    // SQS queue source of push channels (issue 19).
    /// Queue messages handled, by push channel name and `result` (`committed`, `replayed`,
    /// `dead_lettered`, `unmappable_kept`, `retried`).
    pub queue_messages: IntCounterVec,
    /// SQS calls that failed (receive, delete, dead-letter send), by push channel name.
    pub queue_receive_errors: IntCounterVec,
    // History API (issue 20).
    /// History requests, by `route` (`channel`, `coalesced`) and `result` (`ok` or the code).
    pub history_requests: IntCounterVec,
    /// Events history requests read, by `source` (`store`, `archive`).
    pub history_events_read: IntCounterVec,
    // Publish API (issue 19).
    /// Publishes to push channels over HTTP, by `result`: `ok`, `replayed`, or the error code.
    pub publishes: IntCounterVec,
    // Admin API (issue 20).
    /// Calls of `/admin/*`, by `result`: `ok` or the error code.
    pub admin_requests: IntCounterVec,
    // Archive sinks (issue 20).
    /// Events written to archive objects, by sink type.
    pub archive_events: IntCounterVec,
    /// Archive object writes, by sink type and `result` (`ok`, `failed`).
    pub archive_objects: IntCounterVec,
    /// Events committed but not archived yet, the worst channel of each sink type.
    pub archive_lag_events: IntGaugeVec,
    /// 1 while a sink type fails on some channel.
    pub archive_failing: IntGaugeVec,
    /// Events that left the log before a sink archived them.
    pub archive_lost_events: IntCounter,
    // Free-form params (issue 23).
    /// Subscribes and requests refused for a free-form params bound, by `limit`.
    pub free_param_refusals: IntCounterVec,
    // Declarative channels (issue 23).
    /// Polls of declarative channels refused by a limit, by fetcher and code.
    pub declarative_refusals: IntCounterVec,
    /// Upstream pages fetched by declarative channels, by fetcher.
    pub declarative_pages: IntCounterVec,
    /// Polls that stopped at the page cap with more pages left, by fetcher.
    pub declarative_page_cap: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// A fresh set on its own registry (the process uses [`get`]; tests make their own).
    pub(crate) fn new() -> Metrics {
        let r = Registry::new_custom(Some("restream".into()), None).expect("valid prefix");
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(&r, IntCounter::new(name, help).expect("valid metric"))
        };
        Metrics {
            active_channels: register(
                &r,
                IntGauge::new("active_channels", "Channels with a running poller")
                    .expect("valid metric"),
            ),
            subscribers: gauge_vec(
                "subscribers",
                "Subscribers of every channel as Pushpin reports them, by transport",
                &["transport"],
            ),
            polls: counter_vec(
                "polls_total",
                "Poll attempts by fetcher and outcome",
                &["channel", "outcome"],
            ),
            poll_failures: counter_vec(
                "poll_failures_total",
                "Failed polls by channel name and public failure code (details are in the logs)",
                &["channel", "code"],
            ),
            upstream_latency: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "upstream_latency_seconds",
                        "Time for one fetch (fetcher run including the upstream call)",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ]),
                    &["channel"],
                )
                .expect("valid metric"),
            ),
            changes: counter_vec(
                "changes_total",
                "Items published as new, updated or removed",
                &["channel", "kind"],
            ),
            published: counter("published_items_total", "GRIP items accepted by Pushpin"),
            publish_failures: counter(
                "publish_failures_total",
                "Publishes to a Pushpin that failed, one per Pushpin (a configured one: retried before the next poll; another replica's: dropped, its clients resume by seq)",
            ),
            pushpins: register(
                &r,
                IntGauge::new(
                    "pushpins",
                    "Pushpins this replica publishes to: configured, plus those other live replicas advertise",
                )
                .expect("valid metric"),
            ),
            budget_used: gauge_vec(
                "budget_used_calls",
                "Upstream calls counted in each rate-limit window, by key set",
                &["budget", "window_seconds"],
            ),
            budget_limit: gauge_vec(
                "budget_limit_calls",
                "Upstream calls allowed in each rate-limit window, by key set",
                &["budget", "window_seconds"],
            ),
            woh_requests: counter_vec(
                "woh_events_total",
                "WebSocket-over-HTTP events received from Pushpin, by type (keepalive: an empty request)",
                &["event"],
            ),
            sse_streams: counter("sse_streams_total", "SSE streams opened"),
            queue_full: counter_vec(
                "queue_full_total",
                "Snapshot requests dropped because a bounded queue was full, by queue (scheduler: all channels' requests; poller: one channel's; waiting: one remote channel's, cluster mode)",
                &["queue"],
            ),
            lease_events: counter_vec(
                "lease_events_total",
                "Cluster mode: channel leases acquired, released, lost and refused (a conditional write that found the lease held), snapshot requests forwarded to the owning replica, and replica sessions that ran out (session_lapsed)",
                &["event"],
            ),
            fetcher_processes: register(
                &r,
                IntGauge::new(
                    "fetcher_processes_running",
                    "Fetcher processes running now (capped by fetchers.max_processes)",
                )
                .expect("valid metric"),
            ),
            fetcher_process_wait: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "fetcher_process_wait_seconds",
                        "Time a fetcher call waited for a process slot (fetchers.max_processes)",
                    )
                    .buckets(vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0]),
                )
                .expect("valid metric"),
            ),
            fetcher_process_kills: counter_vec(
                "fetcher_process_kills_total",
                "Fetcher process groups killed before they answered, by reason (timeout, output_too_large)",
                &["reason"],
            ),
            fetcher_queue_depth: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "fetcher_queue_depth",
                        "Calls waiting for a warm worker of their fetcher (fetchers.workers_per_fetcher), by fetcher",
                    ),
                    &["fetcher"],
                )
                .expect("valid metric"),
            ),
            fetcher_queue_wait: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "fetcher_queue_wait_seconds",
                        "Time a call waited in its fetcher's FIFO queue for a warm worker and a process slot, by fetcher",
                    )
                    .buckets(vec![0.0005, 0.002, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
                    &["fetcher"],
                )
                .expect("valid metric"),
            ),
            fetcher_workers: register(
                &r,
                IntGauge::new(
                    "fetcher_workers",
                    "Warm fetcher workers running now, idle or busy (capped by fetchers.max_workers)",
                )
                .expect("valid metric"),
            ),
            fetcher_worker_events: counter_vec(
                "fetcher_worker_events_total",
                "Warm fetcher workers started (demand), recycled (calls, memory, changed, env, exited, evicted) and killed (timeout, exited, protocol, output_too_large), by fetcher",
                &["fetcher", "event", "reason"],
            ),
            bodies_too_large: counter_vec(
                "bodies_too_large_total",
                "Bodies refused while read for exceeding their limit, by source (upstream, process_stdout, lambda)",
                &["source"],
            ),
            items_rejected: counter_vec(
                "items_rejected_total",
                "Fetched entries skipped because their id is unusable, by reason (missing, empty, not_scalar, too_long)",
                &["reason"],
            ),
            state_pruned: counter_vec(
                "state_pruned_total",
                "In-memory entries of channels inactive for longer than state.inactive_channel_memory_secs, forgotten, by kind",
                &["what"],
            ),
            store_swept_channels: counter(
                "store_swept_channels_total",
                "Channels inactive for longer than store.retention_secs removed from the store by the sweep",
            ),
            store_orphans_removed: counter(
                "store_orphans_removed_total",
                "Items of an expired channel found without their meta (DynamoDB TTL deletes in any order) and deleted",
            ),
            read_cache: counter_vec(
                "read_cache_events_total",
                "Items and status API read cache: hits, misses (a store read) and evictions",
                &["event"],
            ),
            snapshot_cache: counter_vec(
                "snapshot_cache_events_total",
                "Snapshots of fresh WebSocket subscribes: sent inline in the WOH response (inline), a resume at the kept seq answered (up_to_date), served but not watched for want of room (unwatched), a watched subscriber handed to its poller at a change (resume_owed), stored, not stored because the cache is full or the snapshot is over 16 KiB",
                &["event"],
            ),
            snapshot_cache_bytes: register(
                &r,
                IntGauge::new(
                    "snapshot_cache_bytes",
                    "Bytes of snapshot messages held for fresh WebSocket subscribes (capped by state.snapshot_cache_bytes)",
                )
                .expect("valid metric"),
            ),
            grip_sig_refusals: counter_vec(
                "grip_sig_refusals_total",
                "Requests refused because their Grip-Sig did not verify (invalid) or was missing where only Pushpin may call (missing)",
                &["reason"],
            ),
            origin_refusals: counter_vec(
                "origin_refusals_total",
                "Requests from a browser origin not in server.cors_origins, by kind (http, preflight, websocket)",
                &["kind"],
            ),
            cluster_secret_refusals: counter(
                "cluster_secret_refusals_total",
                "/internal/* requests refused for a missing or wrong cluster secret",
            ),
            refusals: counter_vec(
                "subscribe_refusals_total",
                "Subscribes (and SSE opens) refused by an abuse bound, by error code and limit",
                &["code", "limit"],
            ),
            snapshot_resends_skipped: counter(
                "snapshot_resends_skipped_total",
                "Repeated subscribes confirmed without re-sending the snapshot (limits.snapshot_resend_secs)",
            ),
            pollers_capped: counter_vec(
                "pollers_capped_total",
                "Scheduler passes that left a channel with subscribers unpolled because of a channel cap, by limit",
                &["limit"],
            ),
            rate_tracker_full: counter_vec(
                "rate_tracker_full_total",
                "A rate tracker was full of live entries, so a new key went untracked (raise limits.tracked_clients)",
                &["tracker"],
            ),
            rendering: std::sync::Mutex::new(()),
            auth_refusals: counter_vec(
                "auth_refusals_total",
                "Subscribes and HTTP requests refused for want of a valid token, by reason (missing, malformed, expired, bad_signature, unknown_key, wrong_channel, ...)",
                &["reason"],
            ),
            auth_token_cache: counter_vec(
                "auth_token_cache_total",
                "WebSocket connections' tokens (replayed by Pushpin on every request) found verified already (hit) or verified again (miss)",
                &["event"],
            ),
            auth_key_refreshes: counter_vec(
                "auth_key_refreshes_total",
                "Reloads of the token keys (JWT secret from the key store, JWKS), by outcome (ok, failed)",
                &["outcome"],
            ),
            auth_jwks_keys: register(
                &r,
                IntGauge::new("auth_jwks_keys", "Public keys loaded from the JWKS")
                    .expect("valid metric"),
            ),
            queue_messages: counter_vec(
                "queue_messages_total",
                "SQS messages handled by push channels' queue consumers, by channel name and result (committed, replayed, dead_lettered, unmappable_kept, retried)",
                &["channel", "result"],
            ),
            queue_receive_errors: counter_vec(
                "queue_receive_errors_total",
                "Failed SQS calls of push channels' queue consumers (receive, delete, dead-letter send), by channel name",
                &["channel"],
            ),
            history_requests: counter_vec(
                "history_requests_total",
                "History API requests, by route (channel, coalesced) and result (ok or the error code)",
                &["route", "result"],
            ),
            history_events_read: counter_vec(
                "history_events_read_total",
                "Events read by history requests, by source (store, archive)",
                &["source"],
            ),
            publishes: counter_vec(
                "publishes_total",
                "Publishes to push channels over the HTTP API, by result (ok, replayed, or the error code)",
                &["result"],
            ),
            admin_requests: counter_vec(
                "admin_requests_total",
                "Calls of the admin API (/admin/*), by result (ok, or the error code)",
                &["result"],
            ),
            archive_events: counter_vec(
                "archive_events_total",
                "Events written to archive objects, by sink type (s3, local)",
                &["sink"],
            ),
            archive_objects: counter_vec(
                "archive_objects_total",
                "Archive object writes, by sink type and result (ok, failed)",
                &["sink", "result"],
            ),
            archive_lag_events: gauge_vec(
                "archive_lag_events",
                "Events committed but not archived yet, the worst channel of each sink type",
                &["sink"],
            ),
            archive_failing: gauge_vec(
                "archive_failing",
                "1 while a sink type fails to archive some channel",
                &["sink"],
            ),
            archive_lost_events: counter(
                "archive_lost_events_total",
                "Events that left the store's log before a sink archived them",
            ),
            free_param_refusals: counter_vec(
                "free_param_refusals_total",
                "Subscribes and requests refused for a free-form params bound (limits.max_free_param*), by limit (count, name_length, value_length)",
                &["limit"],
            ),
            declarative_refusals: counter_vec(
                "declarative_refusals_total",
                "Polls of declarative channels refused by a limit, by fetcher and code (url_not_allowed, feed_too_large, transform_failed, host_budget_exhausted)",
                &["fetcher", "code"],
            ),
            declarative_pages: counter_vec(
                "declarative_pages_total",
                "Upstream pages fetched by declarative channels, by fetcher",
                &["fetcher"],
            ),
            declarative_page_cap: counter_vec(
                "declarative_page_cap_total",
                "Polls of declarative channels that stopped at the page cap with pages left (the list is then not complete), by fetcher",
                &["fetcher"],
            ),
            registry: r,
        }
    }

    /// Counts a refusal when `e` is about a free-form params bound.
    pub fn free_param_refused(&self, e: &crate::channel::ParamError) {
        if let Some(limit) = e.free_limit() {
            self.free_param_refusals
                .with_label_values(&[limit.as_str()])
                .inc();
        }
    }

    /// Counts the events of one WOH request (an empty one is a keep-alive).
    pub fn woh_request(&self, events: &[Event]) {
        if events.is_empty() {
            self.woh_requests.with_label_values(&["keepalive"]).inc();
        }
        for e in events {
            self.woh_requests.with_label_values(&[e.name()]).inc();
        }
    }

    /// The exposition text, with gauges set from the current state (one scrape at a time, so
    /// a concurrent scrape never sees the budget gauges half reset).
    pub fn render(&self, active: usize, subscribers: Subscribers, usage: &[WindowUsage]) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        self.active_channels.set(active as i64);
        for (transport, n) in [
            ("websocket", subscribers.websocket),
            ("sse", subscribers.sse),
            ("other", subscribers.other),
        ] {
            self.subscribers
                .with_label_values(&[transport])
                .set(n as i64);
        }
        self.budget_used.reset();
        self.budget_limit.reset();
        for u in usage {
            let window = u.window.as_secs().to_string();
            let labels = [u.budget.as_str(), window.as_str()];
            self.budget_used
                .with_label_values(&labels)
                .set(u.used as i64);
            self.budget_limit
                .with_label_values(&labels)
                .set(u.max as i64);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).expect("exposition text is UTF-8")
    }
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_parseable_exposition_text() {
        let m = get();
        m.polls.with_label_values(&["x", "changed"]).inc();
        m.woh_request(&[]);
        let usage = [WindowUsage {
            budget: "fetcher:x".into(),
            window: Duration::from_secs(60),
            used: 2,
            max: 10,
        }];
        let text = m.render(3, Subscribers::default(), &usage);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
        let find = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap_or_else(|| panic!("{name} missing in {text}"))
        };
        assert!(
            matches!(find("restream_active_channels").value, prometheus_parse::Value::Gauge(v) if v == 3.0)
        );
        let used = find("restream_budget_used_calls");
        assert_eq!(used.labels.get("budget"), Some("fetcher:x"));
        assert_eq!(used.labels.get("window_seconds"), Some("60"));
        find("restream_polls_total");
        find("restream_woh_events_total");
    }
}
