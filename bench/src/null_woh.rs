//! The no-op WebSocket-over-HTTP responder for scenario 3's baseline: it answers like restream
//! (`ready`, GRIP subscribe/unsubscribe control messages, `subscribed`/`unsubscribed`) without
//! doing anything: no channel ids, no demand, no pollers, no snapshots.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use restream::grip::{Control, WS_EXTENSION};
use restream::woh::{self, Event};

const CHANNEL: &str = "bench?n=0";

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
                out.push(Event::text(Control::Unsubscribe(CHANNEL.into()).to_text()));
                out.push(Event::text(
                    r#"{"type":"unsubscribed","channel":"bench","params":{"n":"0"}}"#,
                ));
            }
            Event::Text(_) => {
                out.push(Event::text(Control::Subscribe(CHANNEL.into()).to_text()));
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
