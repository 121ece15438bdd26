//! Handling one WOH request for one client connection, with no state kept in the backend.
//!
//! A connection's subscriptions live in Pushpin: GRIP subscriptions, plus the list of channel
//! ids in the connection meta `Restream-Subs` (set with `Set-Meta-Restream-Subs`, replayed by
//! Pushpin as `Meta-Restream-Subs` on every later request). Any replica can therefore answer any
//! request, including after a restart.

use serde_json::Value;

use crate::channel::{ChannelId, GripChannel};
use crate::fetcher::Registry;
use crate::protocol::{self, ClientMessage, ErrorCode, Rejection, ServerMessage, PROTOCOL_VERSION};
use crate::pushpin::grip::Control;
use crate::pushpin::woh::Event;

/// Name of the connection meta field holding the subscribed channel ids.
pub const SUBS_META: &str = "Restream-Subs";

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
    /// Entries that do not parse are dropped: the header only ever holds what we wrote.
    pub fn from_meta(value: Option<&str>) -> Subscriptions {
        Subscriptions(
            value
                .unwrap_or("")
                .split(' ')
                .filter(|s| !s.is_empty())
                .filter_map(|s| ChannelId::parse(s).ok())
                .collect(),
        )
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

/// What the service lets a connection do.
pub struct Limits {
    /// Must not exceed Pushpin's `connection_subscription_max`, which silently ignores extras.
    pub max_subscriptions: usize,
}

/// What the handler consults besides the request itself: the catalog and the service's rules.
pub struct Context<'a> {
    pub registry: &'a Registry,
    pub limits: &'a Limits,
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
                send(
                    &mut reply,
                    ServerMessage::Ready {
                        protocol: PROTOCOL_VERSION,
                    },
                );
            }
            Event::Text(text) => match protocol::parse(&text) {
                Ok(message) => apply(message, &mut reply, context),
                Err(rejection) => send(&mut reply, rejection.into()),
            },
            Event::Binary(_) => send(
                &mut reply,
                ServerMessage::Error {
                    code: ErrorCode::BadMessage,
                    message: "binary frames are not supported; send JSON text".into(),
                    reference: None,
                },
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
        reply.live_channels = reply.subscriptions.iter().cloned().collect();
    }
    reply
}

fn send(reply: &mut Reply, message: ServerMessage) {
    reply.events.push(Event::text(message.to_json()));
}

fn control(reply: &mut Reply, c: Control) {
    reply.events.push(Event::text(c.to_text()));
}

fn apply(message: ClientMessage, reply: &mut Reply, context: &Context<'_>) {
    let Context { registry, limits } = context;
    match message {
        ClientMessage::Subscribe {
            channel,
            params,
            reference,
            since,
        } => {
            let id = match resolve(&channel, params.as_ref(), reference.clone(), registry) {
                Ok(id) => id,
                Err(r) => return send(reply, r.into()),
            };
            if !reply.subscriptions.contains(&id) {
                if reply.subscriptions.len() >= limits.max_subscriptions {
                    return send(
                        reply,
                        ServerMessage::Error {
                            code: ErrorCode::TooManySubscriptions,
                            message: format!(
                                "a connection can hold at most {} subscriptions; unsubscribe first",
                                limits.max_subscriptions
                            ),
                            reference,
                        },
                    );
                }
                control(reply, Control::Subscribe(id.clone().into()));
                reply.subscriptions.0.push(id.clone());
                reply.subscriptions_changed = true;
            }
            // A repeated subscribe is idempotent: it is confirmed again (and the snapshot sent
            // again, a cheap way to resync), without a second GRIP subscription.
            send(
                reply,
                ServerMessage::Subscribed {
                    channel: id.name().to_string(),
                    params: id.params().clone(),
                    reference,
                },
            );
            reply.snapshots.push(SnapshotWanted { channel: id, since });
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
                    ServerMessage::Error {
                        code: ErrorCode::NotSubscribed,
                        message: format!("not subscribed to {id}"),
                        reference,
                    },
                );
            }
            unsubscribe(reply, &id, reference);
        }
        ClientMessage::UnsubscribeAll { reference } => {
            if reply.subscriptions.is_empty() {
                return send(
                    reply,
                    ServerMessage::Error {
                        code: ErrorCode::NotSubscribed,
                        message: "not subscribed to any channel".into(),
                        reference,
                    },
                );
            }
            for id in reply.subscriptions.0.clone() {
                unsubscribe(reply, &id, reference.clone());
            }
        }
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
            params: id.params().clone(),
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
    ChannelId::from_request(channel, params, &entry.metadata.params).map_err(|e| Rejection {
        code: ErrorCode::InvalidParams,
        message: format!("invalid params for {channel}: {e}"),
        reference,
    })
}

#[cfg(test)]
mod tests;
