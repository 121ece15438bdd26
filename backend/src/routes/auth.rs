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

/// The request's token: `Authorization: Bearer`, else `?token=` (taken out of the options).
fn request_token(req: &HttpRequest, q: &mut ChannelQuery) -> Option<String> {
    let from_query = q.options.remove("token");
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    bearer.or(from_query)
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
    fn the_token_is_read_from_the_query() {
        assert_eq!(query_token("a=1&token=x.y.z"), Some("x.y.z".into()));
        assert_eq!(query_token("token=a%2Bb&token=c"), Some("a+b".into()));
        assert_eq!(query_token("tokens=1"), None);
        assert_eq!(query_token("%zz"), None);
    }
}
