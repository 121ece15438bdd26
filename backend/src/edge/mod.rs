//! Who may talk to the backend, as pure decisions: browser pages by their origin (CORS and the
//! WebSocket `Origin` check, [`origin`]), Pushpin by its signed `Grip-Sig` ([`grip_sig`]),
//! replicas by the shared cluster secret ([`cluster_secret`]). The HTTP glue is in
//! `routes/edge.rs`; docs/security/edge.md has the threat model.

pub mod cluster_secret;
pub mod grip_sig;
pub mod origin;

pub use cluster_secret::ClusterSecret;
pub use grip_sig::GripSigKey;
pub use origin::{AllowedOrigins, OriginDecision};

/// What the routes check requests against, built once at startup.
#[derive(Debug, Default)]
pub struct EdgeTrust {
    /// `server.cors_origins`.
    pub origins: AllowedOrigins,
    /// Pushpin's signing key; `None` only in handler tests without Pushpin (`serve` refuses to
    /// start without one), where any `Grip-Sig` counts as Pushpin's and none is required.
    pub grip_sig: Option<GripSigKey>,
    /// `cluster.secret`; `None` on a single node, where `/internal/*` is always refused.
    pub cluster_secret: Option<ClusterSecret>,
}
