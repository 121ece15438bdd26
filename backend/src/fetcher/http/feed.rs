//! Feed documents (RSS 0.9x/1.0/2.0, Atom, JSON Feed) as items, via `feed-rs`: one item per
//! entry, keyed by its guid/id, or when the feed gives none by a stable hash of its link and
//! title (of its content and dates when it has neither), so a re-poll keeps the same ids.

use serde_json::{json, Map, Value};
use xxhash_rust::xxh3::xxh3_128;

/// Longest summary or content kept per item, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;

/// Why bytes are not a feed (the parser's details are for the logs).
#[derive(Debug, thiserror::Error)]
#[error("not a feed: {0}")]
pub struct FeedError(String);

fn hash_id(parts: &[&str]) -> String {
    let mut joined = String::new();
    for p in parts {
        joined.push_str(p);
        joined.push('\u{1f}');
    }
    format!("h:{:032x}", xxh3_128(joined.as_bytes()))
}

fn text(t: &Option<feed_rs::model::Text>) -> Option<String> {
    t.as_ref()
        .map(|t| t.content.chars().take(MAX_TEXT_CHARS).collect())
}

/// The entries of a feed document as items (`id`, `title`, `link`, `summary`, `content`,
/// `published`, `updated`, `authors`, `categories`).
pub fn items(body: &[u8]) -> Result<Vec<Value>, FeedError> {
    let parser = feed_rs::parser::Builder::new()
        // Entries without an id: our own stable fallback (feed-rs would make a random one).
        .id_generator(|links, title, _| match (links.first(), title) {
            (None, None) => String::new(),
            (link, title) => hash_id(&[
                link.map(|l| l.href.as_str()).unwrap_or(""),
                title.as_ref().map(|t| t.content.as_str()).unwrap_or(""),
            ]),
        })
        .build();
    let feed = parser
        .parse(body)
        .map_err(|e| FeedError(e.to_string().chars().take(300).collect()))?;
    Ok(feed
        .entries
        .into_iter()
        .map(|e| {
            let summary = text(&e.summary);
            let content: Option<String> = e
                .content
                .as_ref()
                .and_then(|c| c.body.as_ref())
                .map(|b| b.chars().take(MAX_TEXT_CHARS).collect());
            let published = e.published.map(|d| d.to_rfc3339());
            let updated = e.updated.map(|d| d.to_rfc3339());
            let id = if e.id.is_empty() {
                hash_id(&[
                    summary.as_deref().unwrap_or(""),
                    content.as_deref().unwrap_or(""),
                    published.as_deref().unwrap_or(""),
                ])
            } else {
                e.id.chars().take(1000).collect()
            };
            let mut item = Map::new();
            item.insert("id".into(), json!(id));
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    item.insert(k.into(), json!(v));
                }
            };
            put("title", text(&e.title));
            put("link", e.links.first().map(|l| l.href.clone()));
            put("summary", summary);
            put("content", content);
            put("published", published);
            put("updated", updated);
            let authors: Vec<&str> = e.authors.iter().filter_map(|a| a.name.as_deref()).collect();
            if !authors.is_empty() {
                item.insert("authors".into(), json!(authors));
            }
            let categories: Vec<&str> = e.categories.iter().map(|c| c.term.as_str()).collect();
            if !categories.is_empty() {
                item.insert("categories".into(), json!(categories));
            }
            Value::Object(item)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RSS: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><guid>g1</guid><title>One</title><link>https://x/1</link><pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>
<item><title>No guid</title><link>https://x/2</link></item>
<item><description>only text</description></item>
</channel></rss>"#;

    #[test]
    fn rss_items_with_ids_and_stable_fallbacks() {
        let a = items(RSS.as_bytes()).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0]["id"], "g1");
        assert_eq!(a[0]["title"], "One");
        assert_eq!(a[0]["published"], "2026-12-01T10:00:00+00:00");
        assert!(a[1]["id"].as_str().unwrap().starts_with("h:"));
        assert!(a[2]["id"].as_str().unwrap().starts_with("h:"));
        assert_ne!(a[1]["id"], a[2]["id"]);
        assert_eq!(
            a,
            items(RSS.as_bytes()).unwrap(),
            "ids are stable across parses"
        );
    }

    #[test]
    fn atom_and_json_feed() {
        let atom = r#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>r</title><id>f</id><updated>2026-12-01T00:00:00Z</updated>
<entry><id>tag:github.com,2008:Repository/1/v1.0</id><title>v1.0</title><updated>2026-12-01T00:00:00Z</updated><link rel="alternate" href="https://github.com/o/r/releases/tag/v1.0"/><author><name>me</name></author></entry></feed>"#;
        let a = items(atom.as_bytes()).unwrap();
        assert_eq!(a[0]["id"], "tag:github.com,2008:Repository/1/v1.0");
        assert_eq!(a[0]["link"], "https://github.com/o/r/releases/tag/v1.0");
        assert_eq!(a[0]["authors"], json!(["me"]));
        let jf = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "j", "items": [{"id": "1", "content_text": "hi", "url": "https://j/1"}]}"#;
        let j = items(jf.as_bytes()).unwrap();
        assert_eq!(j[0]["id"], "1");
        assert_eq!(j[0]["content"], "hi");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(items(b"{not a feed").is_err());
        assert!(items(b"<html><body>hi</body></html>").is_err());
    }

    proptest! {
        /// Any bytes: an error or items, never a panic; every item has a string id.
        #[test]
        fn any_bytes(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(list) = items(&body) {
                prop_assert!(list.iter().all(|i| i["id"].is_string()));
            }
        }

        /// Feeds built from any titles and guids parse, with the guids as ids.
        #[test]
        fn generated_rss(titles in proptest::collection::vec("[a-zA-Z0-9 ]{0,20}", 1..5)) {
            let entries: String = titles.iter().enumerate()
                .map(|(i, t)| format!("<item><guid>id{i}</guid><title>{t}</title></item>"))
                .collect();
            let doc = format!("<rss version=\"2.0\"><channel><title>x</title>{entries}</channel></rss>");
            let list = items(doc.as_bytes()).unwrap();
            prop_assert_eq!(list.len(), titles.len());
            for (i, item) in list.iter().enumerate() {
                prop_assert_eq!(item["id"].as_str().unwrap(), format!("id{i}"));
            }
        }
    }
}
