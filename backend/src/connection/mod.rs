//! Handling one WOH request for one client connection, with no state kept in the backend.
//!
//! A connection's subscriptions live in Pushpin: GRIP subscriptions, plus the list of channel
//! ids in the connection meta `Restream-Subs` (set with `Set-Meta-Restream-Subs`, replayed by
//! Pushpin as `Meta-Restream-Subs` on every later request). Any replica can therefore answer any
//! request, including after a restart.

use serde_json::Value;

use crate::auth::{Grant, Grants, Refusal, RequestAuth};
use crate::channel::{ChannelId, GripChannel};
use crate::fetcher::Registry;
use crate::protocol::{
    self, ClientMessage, ErrorCode, Rejection, ServerMessage, Token, PROTOCOL_VERSION,
};
use crate::pushpin::grip::Control;
use crate::pushpin::woh::Event;
use crate::snapshot_cache::SnapshotCache;
use tokio::time::Instant;

/// Name of the connection meta field holding the subscribed channel ids.
pub const SUBS_META: &str = "Restream-Subs";

/// Longest `Restream-Subs` value written or read: a subscribe that would make it longer is
/// refused (`too_many_subscriptions`); ids past it in a header we are sent are ignored.
pub const MAX_META_LEN: usize = 16 * 1024;

/// A subscriber owed the channel's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotWanted {
    pub channel: ChannelId,
    pub since: Option<u64>,
}

/// The ids a connection is subscribed to, in subscription order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions(Vec<ChannelId>);

impl Subscriptions {
    /// Reads the meta header value (space-separated canonical ids; ids never contain spaces).
    /// Entries that do not parse are dropped: the header only ever holds what we wrote. Only
    /// the first [`MAX_META_LEN`] bytes are read.
    pub fn from_meta(value: Option<&str>) -> Subscriptions {
        let value = value.unwrap_or("");
        let mut end = value.len().min(MAX_META_LEN);
        if end < value.len() {
            // Cut at the last separator within the cap: a cut id would be another id.
            // Bytes, not chars: `end` need not be a char boundary; a space always is.
            end = value.as_bytes()[..=end]
                .iter()
                .rposition(|b| *b == b' ')
                .unwrap_or(0);
        }
        Subscriptions(
            value[..end]
                .split(' ')
                .filter(|s| !s.is_empty())
                .filter_map(|s| ChannelId::parse(s).ok())
                .collect(),
        )
    }

    /// Whether `to_meta` would stay within [`MAX_META_LEN`] with `id` added.
    fn fits(&self, id: &ChannelId) -> bool {
        let len: usize = self.0.iter().map(|s| s.as_str().len() + 1).sum();
        len + id.as_str().len() <= MAX_META_LEN
    }

    pub fn to_meta(&self) -> String {
        self.0
            .iter()
            .map(ChannelId::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn contains(&self, id: &ChannelId) -> bool {
        self.0.contains(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ChannelId> {
        self.0.iter()
    }

    /// The first `max` of them. The meta only ever holds what a reply wrote (at most the
    /// connection's limit), and only Pushpin can send it (its `Grip-Sig` is verified); a longer
    /// list is not ours, and its extra entries are dropped rather than trusted.
    pub fn capped(mut self, max: usize) -> Subscriptions {
        if self.0.len() > max {
            tracing::warn!(
                listed = self.0.len(),
                max,
                "connection meta lists more subscriptions than allowed; the extra ones are dropped"
            );
            self.0.truncate(max);
        }
        self
    }
}

/// What the service lets a connection do, and does for it.
pub struct Limits {
    /// Must not exceed Pushpin's `connection_subscription_max`, which silently ignores extras.
    pub max_subscriptions: usize,
    /// Silence after which Pushpin pings the client (`server.client_keep_alive_secs`), so
    /// load balancers and proxies keep an idle connection open; `None` = no pings.
    pub client_keep_alive: Option<std::time::Duration>,
}

/// A subscribe refused by an abuse bound (`abuse`): what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub code: ErrorCode,
    pub message: String,
    /// Whole seconds before trying again (`rate_limited`).
    pub retry_after: Option<u64>,
}

/// The abuse bounds as one connection's subscribes meet them (implemented by
/// `abuse::ConnectionGuard`; tests use a scripted one). Checks that pass record what they
/// admitted, so a burst within one request cannot overshoot a limit.
pub trait Admission {
    /// One subscribe from this connection and its client address (churn).
    fn subscribe_attempt(&self) -> Result<(), Limited>;
    /// A subscribe that adds `channel` to the connection: it may be active (already active, or
    /// within its fetcher's cap, `declared` by the fetcher's metadata, and the overall cap).
    fn admit_channel(&self, channel: &ChannelId, declared: Option<usize>) -> Result<(), Limited>;
    /// A repeated subscribe: whether its snapshot may be sent again now.
    fn resend_snapshot(&self, channel: &ChannelId) -> bool;
    /// A first subscribe's snapshot goes out: re-sends are counted from now.
    fn snapshot_sent(&self, channel: &ChannelId);
}

/// What the handler consults besides the request itself: the catalog and the service's rules.
pub struct Context<'a> {
    pub registry: &'a Registry,
    pub limits: &'a Limits,
    pub admission: &'a dyn Admission,
    /// Which channels need a token, and the tokens this request carries or earlier ones
    /// granted (verified outside: the checks here are synchronous).
    pub auth: &'a RequestAuth<'a>,
    /// Channels' current snapshots: a fresh subscriber gets its channel's inline.
    pub snapshots: &'a SnapshotCache,
    /// When the request is handled (subscribers served from `snapshots` are watched from then).
    pub now: Instant,
}

/// The answer to one WOH request.
#[derive(Debug, Default)]
pub struct Reply {
    pub events: Vec<Event>,
    pub subscriptions: Subscriptions,
    /// Whether the meta header must be rewritten.
    pub subscriptions_changed: bool,
    /// Channels this connection is subscribed to right now (demand hints).
    pub live_channels: Vec<ChannelId>,
    /// Snapshots (or resumes) to send this connection once its subscriptions are active.
    pub snapshots: Vec<SnapshotWanted>,
    /// Channel tokens' expiry per subscription (connection meta `Restream-Grants`).
    pub grants: Grants,
    /// Whether the grants meta header must be rewritten.
    pub grants_changed: bool,
    /// Subscribes refused and subscriptions ended for want of a valid token, and why (for
    /// metrics and logs; the client only reads a generic sentence).
    pub refusals: Vec<(ChannelId, Refusal)>,
}

/// Handles every event of one request in order.
pub fn handle(
    connection_id: &str,
    events: Vec<Event>,
    subscriptions: Subscriptions,
    context: &Context<'_>,
) -> Reply {
    let mut reply = Reply {
        subscriptions,
        grants: context.auth.grants.clone(),
        ..Reply::default()
    };
    let mut closing = false;
    for event in events {
        match event {
            Event::Open => {
                reply.events.push(Event::Open);
                control(
                    &mut reply,
                    Control::Subscribe(GripChannel::connection(connection_id)),
                );
                // Pushpin keeps it for the connection's life, whichever replica answers later.
                if let Some(silence) = context.limits.client_keep_alive {
                    control(&mut reply, Control::KeepAlive(silence));
                }
                send(
                    &mut reply,
                    ServerMessage::Ready {
                        protocol: PROTOCOL_VERSION,
                    },
                );
            }
            Event::Text(text) => match protocol::parse(&text) {
                Ok(message) => apply(connection_id, message, &mut reply, context),
                Err(rejection) => send(&mut reply, rejection.into()),
            },
            Event::Binary(_) => send(
                &mut reply,
                ServerMessage::error(
                    ErrorCode::BadMessage,
                    "binary frames are not supported; send JSON text",
                    None,
                ),
            ),
            Event::Ping(payload) => reply.events.push(Event::Pong(payload)),
            Event::Pong(_) => {}
            Event::Close(payload) => {
                reply.events.push(Event::Close(payload));
                closing = true;
                break;
            }
            Event::Disconnect => {
                closing = true;
                break;
            }
        }
    }
    if !closing {
        end_unauthorized(&mut reply, context);
        reply.live_channels = reply.subscriptions.iter().cloned().collect();
    }
    reply.grants_changed |= reply.grants.retain_held(&reply.subscriptions.0);
    reply
}

fn send(reply: &mut Reply, message: ServerMessage) {
    reply.events.push(Event::text(message.to_json()));
}

fn control(reply: &mut Reply, c: Control) {
    reply.events.push(Event::text(c.to_text()));
}

/// What a subscriber at `since` is owed beyond what the snapshot cache serves. A fresh one
/// gets the kept snapshot right after its `subscribed` (Pushpin applies the GRIP subscription
/// before it sends the message); one resuming at the kept seq is up to date. Either way the
/// cache watches it until its subscription is surely applied and hands it to the poller if the
/// channel changes meanwhile, so the poller hears nothing of it. What the cache cannot serve is
/// left to the poller; what it serves but cannot watch too, as a resume after the kept seq.
fn snapshot_wanted(
    reply: &mut Reply,
    context: &Context<'_>,
    connection_id: &str,
    id: ChannelId,
    since: Option<u64>,
) -> Option<SnapshotWanted> {
    let Some(served) = context
        .snapshots
        .serve(&id, since, connection_id, context.now)
    else {
        return Some(SnapshotWanted { channel: id, since });
    };
    if since.is_none() {
        let message = served.snapshot.message.as_bytes().to_vec();
        reply.events.push(Event::Text(message));
    }
    (!served.watched).then_some(SnapshotWanted {
        channel: id,
        since: Some(served.snapshot.seq),
    })
}

fn apply(connection_id: &str, message: ClientMessage, reply: &mut Reply, context: &Context<'_>) {
    let Context {
        registry,
        limits,
        admission,
        ..
    } = context;
    match message {
        ClientMessage::Subscribe {
            channel,
            params,
            reference,
            since,
            token,
        } => {
            let id = match resolve(&channel, params.as_ref(), reference.clone(), registry) {
                Ok(id) => id,
                Err(r) => return send(reply, r.into()),
            };
            let grant = match authorize(&id, token.as_ref(), context) {
                Ok(grant) => grant,
                Err(refusal) => return refuse(reply, id, refusal, reference),
            };
            if let Err(r) = admission.subscribe_attempt() {
                return send(reply, limited(r, reference));
            }
            let held = reply.subscriptions.contains(&id);
            if !held {
                if reply.subscriptions.len() >= limits.max_subscriptions
                    || !reply.subscriptions.fits(&id)
                {
                    return send(
                        reply,
                        ServerMessage::error(
                            ErrorCode::TooManySubscriptions,
                            format!(
                                "a connection can hold at most {} subscriptions; unsubscribe first",
                                limits.max_subscriptions
                            ),
                            reference,
                        ),
                    );
                }
                let declared = registry
                    .get(id.name())
                    .and_then(|e| e.metadata.max_channels);
                if let Err(r) = admission.admit_channel(&id, declared) {
                    return send(reply, limited(r, reference));
                }
                control(reply, Control::Subscribe(id.clone().into()));
                reply.subscriptions.0.push(id.clone());
                reply.subscriptions_changed = true;
            }
            if let Grant::ChannelToken { exp } = grant {
                reply.grants_changed |= reply.grants.grant(&id, exp);
            }
            // A repeated subscribe is idempotent: it is confirmed again (and the snapshot sent
            // again, a cheap way to resync, at most once per `limits.snapshot_resend_secs`),
            // without a second GRIP subscription.
            send(
                reply,
                ServerMessage::Subscribed {
                    channel: id.name().to_string(),
                    params: id.params(),
                    reference,
                },
            );
            if !held {
                admission.snapshot_sent(&id);
            } else if !admission.resend_snapshot(&id) {
                return;
            }
            if let Some(wanted) = snapshot_wanted(reply, context, connection_id, id, since) {
                reply.snapshots.push(wanted);
            }
        }
        ClientMessage::Unsubscribe {
            channel,
            params,
            reference,
        } => {
            let id = match resolve(&channel, params.as_ref(), reference.clone(), registry) {
                Ok(id) => id,
                Err(r) => return send(reply, r.into()),
            };
            if !reply.subscriptions.contains(&id) {
                return send(
                    reply,
                    ServerMessage::error(
                        ErrorCode::NotSubscribed,
                        format!("not subscribed to {id}"),
                        reference,
                    ),
                );
            }
            unsubscribe(reply, &id, reference);
        }
        ClientMessage::UnsubscribeAll { reference } => {
            if reply.subscriptions.is_empty() {
                return send(
                    reply,
                    ServerMessage::error(
                        ErrorCode::NotSubscribed,
                        "not subscribed to any channel",
                        reference,
                    ),
                );
            }
            for id in reply.subscriptions.0.clone() {
                unsubscribe(reply, &id, reference.clone());
            }
        }
    }
}

fn limited(r: Limited, reference: Option<Value>) -> ServerMessage {
    ServerMessage::Error {
        code: r.code,
        message: r.message,
        reference,
        retry_after: r.retry_after,
    }
}

/// The token check of a subscribe: after the channel is resolved, before anything starts.
fn authorize(
    id: &ChannelId,
    token: Option<&Token>,
    context: &Context<'_>,
) -> Result<Grant, Refusal> {
    let declared = context
        .registry
        .get(id.name())
        .and_then(|e| e.metadata.access);
    context
        .auth
        .authorize(id, declared, token.map(|t| t.0.as_str()))
}

/// Answers a refused subscribe: nothing is subscribed, hinted or snapshotted.
fn refuse(reply: &mut Reply, id: ChannelId, refusal: Refusal, reference: Option<Value>) {
    send(
        reply,
        ServerMessage::error(ErrorCode::Unauthorized, refusal.public_message(), reference),
    );
    reply.refusals.push((id, refusal));
}

/// Ends the subscriptions no token allows any more (an expired connection or channel token):
/// `unsubscribed` for each, then one `unauthorized` error.
fn end_unauthorized(reply: &mut Reply, context: &Context<'_>) {
    let mut first = None;
    for id in reply.subscriptions.0.clone() {
        let declared = context
            .registry
            .get(id.name())
            .and_then(|e| e.metadata.access);
        if let Err(refusal) = context.auth.still_allowed(&id, declared, &reply.grants) {
            unsubscribe(reply, &id, None);
            reply.refusals.push((id, refusal));
            first.get_or_insert(refusal);
        }
    }
    if let Some(refusal) = first {
        send(
            reply,
            ServerMessage::error(ErrorCode::Unauthorized, refusal.public_message(), None),
        );
    }
}

fn unsubscribe(reply: &mut Reply, id: &ChannelId, reference: Option<Value>) {
    control(reply, Control::Unsubscribe(id.clone().into()));
    reply.subscriptions.0.retain(|s| s != id);
    reply.subscriptions_changed = true;
    send(
        reply,
        ServerMessage::Unsubscribed {
            channel: id.name().to_string(),
            params: id.params(),
            reference,
        },
    );
}

fn resolve(
    channel: &str,
    params: Option<&Value>,
    reference: Option<Value>,
    registry: &Registry,
) -> Result<ChannelId, Rejection> {
    let Some(entry) = registry.get(channel) else {
        let known: Vec<_> = registry.names().take(20).collect();
        return Err(Rejection {
            code: ErrorCode::UnknownChannel,
            message: format!(
                "unknown channel {:?}; available: {}",
                channel.chars().take(64).collect::<String>(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            reference,
        });
    };
    let id =
        ChannelId::from_request_with(channel, params, &entry.metadata.params).map_err(|e| {
            crate::metrics::get().free_param_refused(&e);
            Rejection {
                code: ErrorCode::for_params(&e),
                message: format!("invalid params for {channel}: {e}"),
                reference: reference.clone(),
            }
        })?;
    // A declarative channel's `url` allowlist (issue 23): refused here, never polled.
    entry
        .fetcher
        .admit(&id.params())
        .map_err(|(_, message)| Rejection {
            code: ErrorCode::UrlNotAllowed,
            message,
            reference,
        })?;
    Ok(id)
}

#[cfg(test)]
mod tests;
