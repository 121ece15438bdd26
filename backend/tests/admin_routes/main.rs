//! The admin API in-process, every answer of the contract: off without a token, refused
//! through Pushpin unless `admin.public`, the bearer admin token (missing, wrong, right),
//! channels and params resolved like the other routes, sinks listed, turned on and off
//! through `SinkControl`, its refusals (`sink_not_found`, `sink_in_settings`,
//! `sink_not_configured`, `unavailable`), no archive at all, the log line and the metric, and
//! the private metrics listener serving it.
//!
//! `Sinks` below stands in for the archiver at the route layer only: it keeps sink states in
//! a map, as the contract of `SinkControl` says.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use actix_web::{test, web, App};
use restream::archive::{EnabledBy, SinkControl, SinkError, SinkState, SinkType};
use restream::channel::ChannelId;
use restream::config::{Admin, Secret};
use restream::edge::{EdgeTrust, GripSigKey};
use restream::fetcher::{Fetcher, Registry, SharedRegistry};
use restream::push::PushChannel;
use restream::routes::{self, AppState};
use restream_testkit::stack::grip_sig;
use serde_json::Value;

const TOKEN: &str = "admin-token-0123456789abcdef";
const SETTINGS_CHANNEL: &str = "feed";

/// Sinks kept in a map: `local` is configured, `s3` is not; `feed`'s local sink comes from
/// the settings; `failing` makes every call fail as an unreadable store would.
struct Sinks {
    on: Mutex<BTreeMap<(String, SinkType), SinkState>>,
    failing: AtomicBool,
}

fn sink_state(channel: &str, sink: SinkType, enabled_by: EnabledBy) -> SinkState {
    SinkState {
        channel: channel.into(),
        sink,
        enabled_by,
        archived_seq: 0,
        archived_time_ms: 0,
        channel_seq: 7,
        lag_events: 7,
        lag_secs: 3,
        last_error: None,
    }
}

impl Sinks {
    fn new() -> Sinks {
        let feed = sink_state(SETTINGS_CHANNEL, SinkType::Local, EnabledBy::Settings);
        Sinks {
            on: Mutex::new(BTreeMap::from([(
                (SETTINGS_CHANNEL.to_string(), SinkType::Local),
                feed,
            )])),
            failing: AtomicBool::new(false),
        }
    }

    fn check(&self, sink: SinkType) -> Result<(), SinkError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SinkError::Store("table sinks: connection refused".into()));
        }
        match sink {
            SinkType::S3 => Err(SinkError::NotConfigured("s3")),
            SinkType::Local => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl SinkControl for Sinks {
    async fn list(&self) -> Result<Vec<SinkState>, SinkError> {
        self.check(SinkType::Local)?;
        Ok(self.on.lock().unwrap().values().cloned().collect())
    }

    async fn enable(&self, channel: &ChannelId, sink: SinkType) -> Result<SinkState, SinkError> {
        self.check(sink)?;
        let mut on = self.on.lock().unwrap();
        let state = on
            .entry((channel.to_string(), sink))
            .or_insert_with(|| sink_state(&channel.to_string(), sink, EnabledBy::Api));
        Ok(state.clone())
    }

    async fn disable(&self, channel: &ChannelId, sink: SinkType) -> Result<bool, SinkError> {
        self.check(sink)?;
        let mut on = self.on.lock().unwrap();
        let key = (channel.to_string(), sink);
        match on.get(&key).map(|s| s.enabled_by) {
            Some(EnabledBy::Settings) => Err(SinkError::InSettings),
            Some(EnabledBy::Api) => Ok(on.remove(&key).is_some()),
            None => Ok(false),
        }
    }

    async fn state(
        &self,
        channel: &ChannelId,
        sink: SinkType,
    ) -> Result<Option<SinkState>, SinkError> {
        self.check(sink)?;
        Ok(self
            .on
            .lock()
            .unwrap()
            .get(&(channel.to_string(), sink))
            .cloned())
    }
}

fn pushpin_key() -> Secret {
    Secret::new("admin-routes-pushpin-sig-key")
}

/// `photon` (param `site`, required) and `feed`, both push channels; `admin` as given, the
/// sinks when given, Pushpin's signing key set.
async fn state(admin: Admin, sinks: Option<Arc<Sinks>>) -> web::Data<AppState> {
    let photon =
        "kind = \"push\"\nname = \"photon\"\nid_field = \"id\"\n[params.site]\nrequired = true\n";
    let feed = "kind = \"push\"\nname = \"feed\"\nmode = \"events\"\n";
    let fetchers: Vec<Arc<dyn Fetcher>> = [("photon.toml", photon), ("feed.toml", feed)]
        .into_iter()
        .map(|(label, text)| Arc::new(PushChannel::parse(label, text).unwrap()) as Arc<dyn Fetcher>)
        .collect();
    let registry = Registry::load(fetchers, &Default::default()).await;
    let mut base = restream_testkit::app::state();
    base.history.sinks = sinks.map(|s| s as Arc<dyn SinkControl>);
    web::Data::new(AppState {
        registry: Arc::new(SharedRegistry::new(registry)),
        edge: EdgeTrust {
            grip_sig: Some(GripSigKey::new(&pushpin_key())),
            ..Default::default()
        },
        admin,
        ..base
    })
}

fn on(public: bool) -> Admin {
    Admin {
        token: Some(Secret::new(TOKEN)),
        public,
    }
}

macro_rules! app {
    ($state:expr) => {
        test::init_service(
            App::new()
                .app_data($state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found)),
        )
        .await
    };
}

/// The status, the error code ("" when there is none), the body and the headers.
async fn read(resp: ServiceResponse) -> (u16, String, Value, actix_web::http::header::HeaderMap) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    (status, code, body, headers)
}

macro_rules! call {
    ($app:expr, $req:expr) => {
        read(test::call_service(&$app, $req.to_request()).await).await
    };
}

fn with_token(req: test::TestRequest, token: &str) -> test::TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

fn get(uri: &str) -> test::TestRequest {
    with_token(test::TestRequest::get().uri(uri), TOKEN)
}

fn put(uri: &str) -> test::TestRequest {
    with_token(test::TestRequest::put().uri(uri), TOKEN)
}

fn delete(uri: &str) -> test::TestRequest {
    with_token(test::TestRequest::delete().uri(uri), TOKEN)
}

fn admin_requests(result: &str) -> u64 {
    restream::metrics::get()
        .admin_requests
        .with_label_values(&[result])
        .get()
}

mod access;
mod sinks;
