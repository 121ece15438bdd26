//! Secret settings (Pushpin's signing key, the cluster secret): kept in `SecretString` so no
//! `Debug`, log line or error shows them; only the settings file form holds them in clear.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

/// A secret string; `Debug` prints `Secret(<redacted>)`.
#[derive(Clone)]
pub struct Secret(SecretString);

/// Secrets shorter than this are refused: a guessable key signs anything.
pub const MIN_SECRET_LEN: usize = 16;

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(SecretString::from(value.into()))
    }

    /// 32 random bytes as 64 hex digits: usable as is in Pushpin's config and env vars.
    pub fn generate() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Long enough, and not Pushpin's well-known sample key.
    pub fn is_strong(&self) -> bool {
        let s = self.expose().trim();
        s.len() >= MIN_SECRET_LEN && !s.eq_ignore_ascii_case("changeme")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    /// For settings equality (round-trip tests); request checks use constant-time compares.
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

/// Where Pushpin's `sig_key` (the key its `Grip-Sig` JWTs are signed with) comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SigKey {
    /// `pushpin.sig_key`: the key itself (e.g. from a secret injected as an env var).
    Value(Secret),
    /// `pushpin.sig_key_file`: a file holding it (surrounding whitespace ignored), read at
    /// startup (e.g. a docker secret).
    File(PathBuf),
}

/// Why the signing key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SigKeyError {
    #[error("cannot read pushpin.sig_key_file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the key in pushpin.sig_key_file {path} is too weak: at least {MIN_SECRET_LEN} characters, not `changeme` (generate one: openssl rand -hex 32)")]
    Weak { path: String },
}

impl SigKey {
    /// The key itself (read from its file when it has one).
    pub fn load(&self) -> Result<Secret, SigKeyError> {
        match self {
            SigKey::Value(secret) => Ok(secret.clone()),
            SigKey::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SigKeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let secret = Secret::new(text.trim().to_string());
                match secret.is_strong() {
                    true => Ok(secret),
                    false => Err(SigKeyError::Weak {
                        path: path.display().to_string(),
                    }),
                }
            }
        }
    }
}
