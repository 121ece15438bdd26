//! The private metrics listener (`server.metrics_listen`, ECS: `0.0.0.0:9100`): `GET /metrics`,
//! `GET /healthz` and the admin API (`/admin/*`, when `admin.token` is set), every other path
//! 404, on its own port beside the backend port.
//!
//! No edge checks: no Pushpin route and no load balancer target points at it, so its only
//! callers are whoever the network lets in — it must be reachable from the operator's
//! scraper and tools only (a security group, a firewall). Its metrics show counts and fetcher
//! names, never a secret or a channel's params; the admin API still needs its bearer token.

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};

use super::{admin, health, metrics, ApiError, AppState};

/// Binds `addr` for the listener; the error names the setting.
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (server.metrics_listen)"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics::private_metrics))
        .route("/healthz", web::get().to(health::healthz))
        .configure(admin::configure);
}

async fn not_found() -> HttpResponse {
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "this port serves GET /metrics, GET /healthz and the admin API (/admin/*) only",
    )
    .error_response()
}

/// The listener's server (one worker: it answers a scraper), running until [`Private::stop`].
pub struct Private {
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Private {
    pub fn start(listener: TcpListener, state: web::Data<AppState>) -> anyhow::Result<Private> {
        use anyhow::Context;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(configure)
                .default_service(web::to(not_found))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .context("cannot serve metrics (server.metrics_listen)")?
        .run();
        tracing::info!(%addr, "metrics listening (GET /metrics, /healthz, /admin/*)");
        Ok(Private {
            handle: server.handle(),
            task: tokio::spawn(server),
        })
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}
