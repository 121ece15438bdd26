//! Redaction of API key values from fetcher output and errors, before any of it can reach a
//! log: as written, percent-encoded (as in a URL or a form body) and base64-encoded (as in a
//! `Basic` authorization header or a token), at any position in the encoded text.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use secrecy::ExposeSecret;

use super::Keys;

/// What replaces a key value.
const REDACTED: &str = "[redacted]";

/// Shorter values are not redacted: they would match ordinary text.
const MIN_SECRET_LEN: usize = 4;

/// Replaces every key value in `text`, in each form it may take, with `[redacted]`.
pub fn redact(text: &str, keys: &Keys) -> String {
    let mut out = text.to_string();
    for secret in keys.values() {
        let raw = secret.expose_secret();
        if raw.len() < MIN_SECRET_LEN {
            continue;
        }
        let mut forms = vec![raw.to_string()];
        forms.extend(percent_forms(raw));
        forms.extend(base64_forms(raw.as_bytes()));
        // Longest first, so a longer form is not left half-replaced by a shorter one.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        for form in forms.iter().filter(|f| f.len() >= MIN_SECRET_LEN) {
            out = out.replace(form.as_str(), REDACTED);
        }
    }
    out
}

/// The value percent-encoded as URLs and form bodies carry it (`%20` or `+` for a space, hex
/// digits in either case).
fn percent_forms(raw: &str) -> Vec<String> {
    let upper = utf8_percent_encode(raw, NON_ALPHANUMERIC).to_string();
    let lower = lowercase_escapes(&upper);
    let plus = upper.replace("%20", "+");
    vec![plus, lower, upper]
}

fn lowercase_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
        }
    }
    out
}

/// The base64 characters that only the value's own bytes decide, for each of the three
/// alignments it can have inside a longer encoded text (`user:KEY` in a `Basic` header), in
/// the standard and the URL-safe alphabet.
fn base64_forms(raw: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for offset in 0..3 {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(raw);
        // Characters carrying bits of the prefix or of whatever follows are left out.
        let first = (offset * 8).div_ceil(6);
        let last = (padded.len() * 8) / 6;
        for engine in [&STANDARD, &URL_SAFE] {
            let encoded = engine.encode(&padded);
            if let Some(part) = encoded.get(first..last) {
                forms.push(part.to_string());
            }
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::SecretString;

    fn keys(value: &str) -> Keys {
        let mut keys = Keys::new();
        keys.insert("api-key".into(), SecretString::from(value));
        keys
    }

    #[test]
    fn redacts_key_values() {
        assert_eq!(
            redact("GET /?api-key=s3cr3t-value failed", &keys("s3cr3t-value")),
            "GET /?api-key=[redacted] failed"
        );
    }

    #[test]
    fn redacts_percent_encoded_values() {
        let keys = keys("a b/c+d=é");
        for text in [
            "q=a%20b%2Fc%2Bd%3D%C3%A9&x=1",
            "q=a+b%2Fc%2Bd%3D%C3%A9&x=1",
            "q=a%20b%2fc%2bd%3d%c3%a9&x=1",
        ] {
            assert_eq!(redact(text, &keys), "q=[redacted]&x=1", "{text}");
        }
    }

    #[test]
    fn redacts_base64_in_a_basic_header() {
        let keys = keys("s3cr3t-value");
        for user in ["u", "us", "use", "user"] {
            let header = STANDARD.encode(format!("{user}:s3cr3t-value"));
            let out = redact(&format!("Authorization: Basic {header}"), &keys);
            assert!(out.contains(REDACTED), "{user}: {out}");
            assert!(!out.contains(&header), "{user}: {out}");
        }
    }

    #[test]
    fn short_values_are_left_alone() {
        assert_eq!(redact("abc abc", &keys("abc")), "abc abc");
    }

    proptest! {
        /// Whatever the key and wherever it stands, no form of it survives.
        #[test]
        fn no_form_of_a_key_survives(
            key in "[ -~]{4,40}",
            before in "[ -~]{0,10}",
            after in "[ -~]{0,10}",
        ) {
            let keys = keys(&key);
            let plain = format!("{before}{key}{after}");
            let encoded = [
                plain.clone(),
                utf8_percent_encode(&plain, NON_ALPHANUMERIC).to_string(),
                STANDARD.encode(&plain),
                URL_SAFE.encode(&plain),
            ];
            for text in encoded {
                let out = redact(&text, &keys);
                prop_assert!(!out.contains(&key), "raw key left in {out:?}");
                prop_assert!(
                    !out.contains(&utf8_percent_encode(&key, NON_ALPHANUMERIC).to_string()),
                    "encoded key left in {out:?}"
                );
                prop_assert!(out.contains(REDACTED) , "{text:?} -> {out:?}");
            }
        }
    }
}
