//! `[admin]`: the operators' management API (`/admin/*`, docs/history.md): its bearer token
//! (a secret; empty = the API is off) and whether requests through Pushpin may reach it; the
//! same in the file and typed forms.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Secret, SettingsError};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// The bearer token every `/admin/*` request carries (≥ 16 characters,
    /// `RESTREAM_ADMIN__TOKEN`); empty = the admin API is off (every `/admin/*` is 404). A
    /// secret: never logged or shown.
    #[serde(serialize_with = "token_out", deserialize_with = "token_in")]
    pub token: Option<Secret>,
    /// Whether a request that came through Pushpin (the public surface) may reach the admin
    /// API; false (the default): only the backend port and the private metrics listener,
    /// reached directly, serve it.
    pub public: bool,
}

/// The file form holds the token in clear ("" = none), as for the other secrets.
fn token_out<S: Serializer>(token: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.as_ref().map_or("", Secret::expose))
}

fn token_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let text = String::deserialize(d)?;
    Ok((!text.trim().is_empty()).then(|| Secret::new(text.trim())))
}

impl Admin {
    /// A set token must be strong: it turns sinks on and off.
    pub(super) fn check(self) -> Result<Admin, SettingsError> {
        match &self.token {
            Some(token) if !token.is_strong() => {
                Err(SettingsError::WeakSecret { key: "admin.token" })
            }
            _ => Ok(self),
        }
    }

    /// Whether the admin API is on (a token is set).
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_optional_strong_and_never_printed() {
        let off: Admin = toml::from_str("token = \"\"\npublic = false\n").unwrap();
        assert!(!off.enabled());
        let on: Admin =
            toml::from_str::<Admin>("token = \"admin-token-0123456789\"\npublic = true\n")
                .unwrap()
                .check()
                .unwrap();
        assert!(on.enabled() && on.public);
        assert!(!format!("{on:?}").contains("admin-token"));
        let back: Admin = toml::from_str(&toml::to_string(&on).unwrap()).unwrap();
        assert_eq!(back, on);
        let weak: Admin = toml::from_str("token = \"short\"\npublic = false\n").unwrap();
        assert!(weak
            .check()
            .unwrap_err()
            .to_string()
            .contains("admin.token"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own error type
    fn the_token_comes_from_the_environment_and_is_redacted() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("RESTREAM_ADMIN__TOKEN", "admin-token-from-env-0123");
            jail.set_env("RESTREAM_ADMIN__PUBLIC", "true");
            let s = crate::config::Settings::load(None)
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert!(s.admin.enabled() && s.admin.public);
            let shown = serde_json::to_string(&s.redacted()).unwrap();
            assert!(!shown.contains("admin-token-from-env"), "{shown}");
            assert!(!format!("{s:?}").contains("admin-token-from-env"));
            let back: crate::config::Settings = toml::from_str(&s.to_toml().unwrap()).unwrap();
            assert_eq!(back, s, "the file form loads again");
            jail.set_env("RESTREAM_ADMIN__TOKEN", "changeme");
            let weak = crate::config::Settings::load(None).unwrap_err().to_string();
            assert!(weak.contains("admin.token"), "{weak}");
            Ok(())
        });
    }
}
