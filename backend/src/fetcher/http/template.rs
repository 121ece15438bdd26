//! Templates of declarative channels: `{param}`, `{key:name}` and `{base}` placeholders in a
//! URL, a header value or a request body, each filled with the encoding its place needs.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::channel::encode_component;
use crate::fetcher::Keys;

/// One `{…}` of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder<'a> {
    Base,
    Param(&'a str),
    Key(&'a str),
}

/// A piece of a template: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Hole(Placeholder<'a>),
}

/// Whether `name` (between braces) is a placeholder: a param name or `key:<name>`, made of
/// ASCII letters, digits, `_`, `-` and `.`. Anything else (`{ a: 1 }` in a GraphQL query)
/// is literal text.
fn is_placeholder(name: &str) -> bool {
    let name = name.strip_prefix("key:").unwrap_or(name);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The pieces of `template`; braces around anything but a placeholder name are literal text.
pub fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut literal = 0;
    while let Some(open) = rest[literal..].find('{').map(|i| i + literal) {
        let Some(close) = rest[open..].find('}').map(|i| i + open) else {
            break;
        };
        let name = &rest[open + 1..close];
        if !is_placeholder(name) {
            literal = open + 1;
            continue;
        }
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        out.push(Piece::Hole(match name {
            "base" => Placeholder::Base,
            _ => match name.strip_prefix("key:") {
                Some(key) => Placeholder::Key(key),
                None => Placeholder::Param(name),
            },
        }));
        rest = &rest[close + 1..];
        literal = 0;
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Every placeholder of `template`.
pub fn placeholders(template: &str) -> Vec<Placeholder<'_>> {
    pieces(template)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Hole(h) => Some(h),
            Piece::Text(_) => None,
        })
        .collect()
}

/// How a value is written into its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Percent-encoded (URLs): a value can never add a path segment or a query parameter.
    Url,
    /// As is (header values, which refuse control characters; JSON strings, escaped by serde).
    Raw,
}

/// What placeholders stand for in one request.
pub struct Values<'a> {
    pub base: &'a str,
    pub params: &'a BTreeMap<String, String>,
    pub keys: &'a Keys,
}

impl Values<'_> {
    /// `template` filled in; `None` when it names a key that is not there.
    pub fn render(&self, template: &str, encoding: Encoding) -> Option<String> {
        let mut out = String::new();
        for piece in pieces(template) {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Hole(Placeholder::Base) => out.push_str(self.base),
                Piece::Hole(Placeholder::Param(name)) => {
                    let value = self.params.get(name).map(String::as_str).unwrap_or("");
                    out.push_str(&encode(value, encoding));
                }
                Piece::Hole(Placeholder::Key(name)) => {
                    let value = self.keys.get(name)?.expose_secret().to_string();
                    out.push_str(&encode(&value, encoding));
                }
            }
        }
        Some(out)
    }

    /// A JSON body: every string in `body` (keys of objects included) rendered raw, so a
    /// value can never change the document's structure.
    pub fn render_json(&self, body: &Value) -> Option<Value> {
        Some(match body {
            Value::String(s) => Value::String(self.render(s, Encoding::Raw)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.render_json(v))
                    .collect::<Option<_>>()?,
            ),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| Some((self.render(k, Encoding::Raw)?, self.render_json(v)?)))
                    .collect::<Option<_>>()?,
            ),
            other => other.clone(),
        })
    }
}

fn encode(value: &str, encoding: Encoding) -> String {
    match encoding {
        Encoding::Url => encode_component(value),
        Encoding::Raw => value.to_string(),
    }
}

/// Every string of a JSON value (object keys included), for checking its placeholders.
pub fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        Value::Object(o) => o
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.as_str()).chain(strings(v)))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::SecretString;
    use serde_json::json;

    fn values<'a>(params: &'a BTreeMap<String, String>, keys: &'a Keys) -> Values<'a> {
        Values {
            base: "https://api.example",
            params,
            keys,
        }
    }

    #[test]
    fn placeholders_are_parsed() {
        assert_eq!(
            placeholders("{base}/a/{x}?k={key:token}&{ q {y} }{"),
            vec![
                Placeholder::Base,
                Placeholder::Param("x"),
                Placeholder::Key("token"),
                Placeholder::Param("y"),
            ]
        );
    }

    #[test]
    fn renders_urls_headers_and_bodies() {
        let params: BTreeMap<String, String> = [("q".into(), "a b&c".into())].into();
        let mut keys = Keys::new();
        keys.insert("token".into(), SecretString::from("t/1"));
        let v = values(&params, &keys);
        assert_eq!(
            v.render("{base}/s?q={q}&k={key:token}", Encoding::Url)
                .unwrap(),
            "https://api.example/s?q=a%20b%26c&k=t%2F1"
        );
        assert_eq!(
            v.render("Bearer {key:token}", Encoding::Raw).unwrap(),
            "Bearer t/1"
        );
        assert_eq!(v.render("{key:missing}", Encoding::Raw), None);
        let body = json!({"query": "{q}", "n": 1, "list": ["{q}", true], "{q}": null});
        assert_eq!(
            v.render_json(&body).unwrap(),
            json!({"query": "a b&c", "n": 1, "list": ["a b&c", true], "a b&c": null})
        );
    }

    proptest! {
        /// A param value can never add a path segment, query parameter or fragment to a URL.
        #[test]
        fn url_values_cannot_change_structure(value in "\\PC{0,40}") {
            let params: BTreeMap<String, String> = [("v".into(), value.clone())].into();
            let keys = Keys::new();
            let url = values(&params, &keys).render("{base}/x?v={v}", Encoding::Url).unwrap();
            let rendered = &url["https://api.example/x?v=".len()..];
            prop_assert!(!rendered.contains(['/', '?', '&', '#', '=', ' ']));
            let decoded = percent_encoding::percent_decode_str(rendered).decode_utf8().unwrap();
            prop_assert_eq!(decoded, value);
        }

        /// A JSON body stays the same shape whatever the values.
        #[test]
        fn json_bodies_keep_their_shape(value in "\\PC{0,40}") {
            let params: BTreeMap<String, String> = [("v".into(), value.clone())].into();
            let keys = Keys::new();
            let body = json!({"a": "{v}", "b": ["x{v}y"]});
            let out = values(&params, &keys).render_json(&body).unwrap();
            prop_assert_eq!(out, json!({"a": value.clone(), "b": [format!("x{value}y")]}));
        }

        /// Any template text parses without panicking, and rendering it with no values gives
        /// back its text minus the placeholders.
        #[test]
        fn any_template_parses(t in "\\PC{0,60}") {
            let literal: String = pieces(&t).into_iter().filter_map(|p| match p {
                Piece::Text(x) => Some(x),
                Piece::Hole(_) => None,
            }).collect();
            let params = BTreeMap::new();
            let keys = Keys::new();
            let v = Values { base: "", params: &params, keys: &keys };
            if placeholders(&t).iter().all(|p| !matches!(p, Placeholder::Key(_))) {
                prop_assert_eq!(v.render(&t, Encoding::Raw).unwrap(), literal);
            }
        }
    }
}
