//! `/healthz` (the process is up) and `/readyz` (it can serve: Pushpin reachable, item store
//! reachable, fetchers loaded, every essential task alive; the details on the backend port
//! only).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::AppState;
use crate::supervisor::Essentials;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

fn check(ok: bool, detail: String) -> Value {
    json!({"ok": ok, "detail": detail})
}

async fn pushpin(urls: &[String]) -> Value {
    let client = match reqwest::Client::builder().timeout(CHECK_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return check(false, format!("no HTTP client: {e}")),
    };
    // Any HTTP answer from the control port means that Pushpin is up; all asked at once.
    let answers =
        futures_util::future::join_all(urls.iter().map(|url| client.get(url).send())).await;
    let mut unreachable = Vec::new();
    for (url, answer) in urls.iter().zip(answers) {
        if let Err(e) = answer {
            tracing::warn!(url = %url, error = %e, "readiness: Pushpin unreachable");
            unreachable.push(url.as_str());
        }
    }
    match (urls.is_empty(), unreachable.is_empty()) {
        (true, _) => check(
            false,
            "no Pushpin control URL configured (pushpin.http_publish_urls)".into(),
        ),
        (false, true) => check(true, format!("{} instance(s) answered", urls.len())),
        (false, false) => check(false, format!("no answer from {}", unreachable.join(", "))),
    }
}

async fn store(state: &AppState) -> Value {
    // Any id will do (reading an unknown channel is a cheap round trip); the store takes
    // only valid ones, so the probe's is a valid name no fetcher is expected to have.
    let probe = crate::channel::ChannelId::parse("restream-readyz").expect("a valid channel id");
    match tokio::time::timeout(CHECK_TIMEOUT, state.store.load(&probe)).await {
        Ok(Ok(_)) => check(true, "reachable".into()),
        Ok(Err(e)) => check(false, format!("{e}")),
        Err(_) => check(false, format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Every essential task alive (an app without them, as in handler tests, has none to lose).
fn tasks(essentials: Option<&Essentials>) -> Value {
    let dead = essentials.map(Essentials::dead).unwrap_or_default();
    match dead.first() {
        None => check(true, "running".into()),
        Some(_) => check(
            false,
            dead.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// Each failing archive sink type, for the details only: a failing sink delays archiving
/// (it retries, nothing is lost) but never live delivery, so it does not make the replica
/// unready.
fn archive(sinks: Option<&dyn crate::archive::SinkControl>) -> Option<Value> {
    let failing = sinks?.failing();
    let mut out = serde_json::Map::new();
    for (sink, detail) in &failing {
        out.insert(sink.as_str().to_string(), check(false, detail.clone()));
    }
    Some(match failing.is_empty() {
        true => check(true, "no sink failing".into()),
        false => json!({"ok": false, "detail": "archiving is delayed (retrying)", "sinks": out}),
    })
}

/// `GET /readyz`: 200 when every check passes, else 503; the body says which failed.
/// `/readyz`: the checks in detail on the backend port; through Pushpin only whether it is
/// ready (the details name internal hosts and errors).
pub async fn readyz(
    req: HttpRequest,
    state: web::Data<AppState>,
    essentials: Option<web::Data<Essentials>>,
) -> HttpResponse {
    let (pushpin, store) = tokio::join!(pushpin(&state.pushpin_control_urls), store(&state));
    let loaded = state.registry.current().len();
    let fetchers = check(loaded > 0, format!("{loaded} loaded"));
    let tasks = tasks(essentials.as_ref().map(|e| e.get_ref()));
    let ready = [&pushpin, &store, &fetchers, &tasks]
        .iter()
        .all(|c| c["ok"] == json!(true));
    let body = match super::via_pushpin(&req) {
        true => json!({ "ready": ready }),
        false => {
            let mut checks =
                json!({"pushpin": pushpin, "store": store, "fetchers": fetchers, "tasks": tasks});
            if let Some(archive) = archive(state.history.sinks.as_deref()) {
                checks["archive"] = archive;
            }
            json!({ "ready": ready, "checks": checks })
        }
    };
    match ready {
        true => HttpResponse::Ok(),
        false => HttpResponse::ServiceUnavailable(),
    }
    .insert_header(("Cache-Control", "no-store"))
    .json(body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::archive::book::Book;
    use crate::archive::control::Sinks;
    use crate::archive::SinkType;

    #[test]
    fn failing_sinks_show_in_the_details_by_type() {
        assert_eq!(archive(None), None, "no archive, no entry");
        let store = Arc::new(crate::store::MemoryStore::new(10));
        let settings = crate::config::Archive {
            s3_bucket: "b".into(),
            ..Default::default()
        };
        let book = Arc::new(Book::new(store, settings));
        let sinks = Sinks::new(book.clone());
        assert_eq!(archive(Some(&sinks)).unwrap()["ok"], true);
        for channel in ["a", "b?x=1"] {
            book.set_failing(
                SinkType::S3,
                channel,
                Some("the s3 sink cannot write objects".into()),
            );
        }
        let check = archive(Some(&sinks)).unwrap();
        assert_eq!(check["ok"], false, "{check}");
        assert_eq!(
            check["sinks"]["s3"],
            json!({"ok": false, "detail": "the s3 sink cannot write objects (2 channel(s))"})
        );
        assert!(check["sinks"].get("local").is_none());
    }
}
