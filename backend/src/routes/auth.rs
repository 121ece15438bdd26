//! Tokens on HTTP requests: `?token=` (a WebSocket URL, an `EventSource` URL) or
//! `Authorization: Bearer` (the HTTP API, SSE from `fetch`).

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;

use super::api_error::ApiError;
use super::channel_query::ChannelQuery;
use super::AppState;
use crate::auth;

/// The first `token` in a query string.
pub fn query_token(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// A WebSocket connection's token: `Authorization: Bearer` (clients that can set headers;
/// Pushpin replays the handshake's headers on every request), else `?token=` on its URL.
pub fn connection_token(req: &HttpRequest) -> Option<String> {
    bearer(req).or_else(|| query_token(req.query_string()))
}

/// The request's token: `Authorization: Bearer`, else `?token=` (taken out of the options).
fn request_token(req: &HttpRequest, q: &mut ChannelQuery) -> Option<String> {
    let from_query = q.options.remove("token");
    bearer(req).or(from_query)
}

/// Refuses a request for a token channel without a token naming it (401); `Ok(Some(exp))`
/// when a token granted it, `Ok(None)` for a public channel.
pub async fn require(
    state: &AppState,
    req: &HttpRequest,
    q: &mut ChannelQuery,
    via: &'static str,
) -> Result<Option<u64>, ApiError> {
    let token = request_token(req, q);
    let declared = q.entry.metadata.access;
    state
        .auth
        .check_request(&q.id, declared, token.as_deref(), auth::now_unix())
        .await
        .map_err(|refusal| {
            auth::record(refusal, &q.id, via);
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                refusal.public_message(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_header_wins_over_the_query() {
        let req = actix_web::test::TestRequest::get()
            .uri("/ws?token=from-query")
            .insert_header(("Authorization", "bearer  from-header "))
            .to_http_request();
        assert_eq!(connection_token(&req), Some("from-header".into()));
        let req = actix_web::test::TestRequest::get()
            .uri("/ws?token=from-query")
            .insert_header(("Authorization", "Basic abc"))
            .to_http_request();
        assert_eq!(connection_token(&req), Some("from-query".into()));
    }

    #[test]
    fn the_token_is_read_from_the_query() {
        assert_eq!(query_token("a=1&token=x.y.z"), Some("x.y.z".into()));
        assert_eq!(query_token("token=a%2Bb&token=c"), Some("a+b".into()));
        assert_eq!(query_token("tokens=1"), None);
        assert_eq!(query_token("%zz"), None);
    }
}
