//! Which channels need a token: the settings' per-channel override, else the fetcher's
//! metadata (`"access": "token"`), else `auth.default_access`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Who may subscribe to a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone.
    #[default]
    Public,
    /// Only the holder of a valid token that names the channel.
    Token,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Token => "token",
        }
    }

    /// Reads `"public"` or `"token"`.
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "public" => Some(Access::Public),
            "token" => Some(Access::Token),
            _ => None,
        }
    }
}

/// The access rules of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// For channels neither the settings nor their fetcher decide.
    pub default_access: Access,
    /// Per channel name, from the settings; wins over the fetcher's metadata.
    pub overrides: HashMap<String, Access>,
}

impl Policy {
    /// The access of channel `name`, whose fetcher declares `declared` (if anything).
    pub fn access(&self, name: &str, declared: Option<Access>) -> Access {
        self.overrides
            .get(name)
            .copied()
            .or(declared)
            .unwrap_or(self.default_access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_beat_metadata_which_beats_the_default() {
        let mut p = Policy::default();
        assert_eq!(p.access("a", None), Access::Public);
        assert_eq!(p.access("a", Some(Access::Token)), Access::Token);
        p.overrides.insert("a".into(), Access::Public);
        assert_eq!(p.access("a", Some(Access::Token)), Access::Public);
        p.default_access = Access::Token;
        assert_eq!(p.access("b", None), Access::Token);
        assert_eq!(p.access("b", Some(Access::Public)), Access::Public);
        assert_eq!(p.access("a", None), Access::Public);
    }

    #[test]
    fn access_reads_its_two_words() {
        assert_eq!(Access::parse("token"), Some(Access::Token));
        assert_eq!(Access::parse("public"), Some(Access::Public));
        assert_eq!(Access::parse("Token"), None);
        assert_eq!(Access::Token.as_str(), "token");
    }
}
