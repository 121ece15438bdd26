//! The no-op WebSocket-over-HTTP responder for scenario 3's baseline: it answers like restream
//! (`ready`, GRIP subscribe/unsubscribe control messages, `subscribed`/`unsubscribed`) without
//! doing anything: no channel ids, no demand, no pollers, no snapshots.

use std::net::SocketAddr;
use std::sync::LazyLock;

use actix_web::{web, App, HttpResponse, HttpServer};
use restream::channel::GripChannel;
use restream::pushpin::grip::{Control, WS_EXTENSION};
use restream::pushpin::woh::{self, Event};

const CHANNEL: &str = "bench?n=0";

/// The control messages, built once: the baseline does no per-request work.
static SUBSCRIBE: LazyLock<String> = LazyLock::new(|| control(Control::Subscribe));
static UNSUBSCRIBE: LazyLock<String> = LazyLock::new(|| control(Control::Unsubscribe));

fn control(make: fn(GripChannel) -> Control) -> String {
    make(GripChannel::parse(CHANNEL).expect("a channel id")).to_text()
}

async fn respond(body: web::Bytes) -> HttpResponse {
    let events = woh::decode(&body).unwrap_or_default();
    let mut out = Vec::new();
    for e in events {
        match e {
            Event::Open => {
                out.push(Event::Open);
                out.push(Event::text(r#"{"type":"ready","protocol":1}"#));
            }
            Event::Text(t) if t.windows(11).any(|w| w == b"unsubscribe") => {
                out.push(Event::text(UNSUBSCRIBE.as_str()));
                out.push(Event::text(
                    r#"{"type":"unsubscribed","channel":"bench","params":{"n":"0"}}"#,
                ));
            }
            Event::Text(_) => {
                out.push(Event::text(SUBSCRIBE.as_str()));
                out.push(Event::text(
                    r#"{"type":"subscribed","channel":"bench","params":{"n":"0"}}"#,
                ));
            }
            Event::Ping(p) => out.push(Event::Pong(p)),
            Event::Close(c) => out.push(Event::Close(c)),
            _ => {}
        }
    }
    HttpResponse::Ok()
        .content_type(woh::CONTENT_TYPE)
        .insert_header(("Sec-WebSocket-Extensions", WS_EXTENSION))
        .insert_header(("Keep-Alive-Interval", "30"))
        .body(woh::encode(&out))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

/// Serves until killed, with as many workers as the restream backend's default.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    HttpServer::new(|| {
        App::new()
            .route("/healthz", web::get().to(healthz))
            .default_service(web::post().to(respond))
    })
    .workers(2)
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}
