//! Pagination of declarative channels: following a `Link: <…>; rel="next"` header, a cursor
//! field of the response, or a page number, up to a page cap per poll.

use serde::Deserialize;
use serde_json::Value;

use crate::channel::encode_component;

/// How a channel's upstream pages its answers (`[pagination]` in a channel file).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Pagination {
    /// The next page's URL is the `Link` header's `rel="next"` (GitHub, RFC 8288); it must be
    /// on the first page's scheme, host and port.
    Link {
        #[serde(default)]
        max_pages: Option<u32>,
    },
    /// The next page is asked for with query parameter `param` set to the value at JSON
    /// pointer `field` of this page; no value (or the same one again) ends the walk.
    Cursor {
        field: String,
        param: String,
        #[serde(default)]
        max_pages: Option<u32>,
    },
    /// Query parameter `param` counts pages from `start` (default 1); an empty page ends it.
    Page {
        param: String,
        #[serde(default = "one")]
        start: u64,
        #[serde(default)]
        max_pages: Option<u32>,
    },
}

fn one() -> u64 {
    1
}

impl Pagination {
    /// The channel's own cap, if it sets one.
    pub fn max_pages(&self) -> Option<u32> {
        match self {
            Pagination::Link { max_pages }
            | Pagination::Cursor { max_pages, .. }
            | Pagination::Page { max_pages, .. } => *max_pages,
        }
    }
}

/// Where the walk goes after one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Url(String),
    Done,
}

/// `url` with `name=value` added to its query (both percent-encoded).
pub fn with_query(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}{}={}",
        encode_component(name),
        encode_component(value)
    )
}

/// The page after one: `first` is the first page's URL (cursor and page numbers are added
/// to it), `page` counts pages fetched so far (1 after the first), `link` is this page's
/// `Link` header, `body` its parsed JSON, `items` how many items it had, `last_cursor` the
/// cursor that asked for it.
pub fn next(
    pagination: &Pagination,
    first: &str,
    page: u64,
    link: Option<&str>,
    body: Option<&Value>,
    items: usize,
    last_cursor: Option<&str>,
) -> Next {
    match pagination {
        Pagination::Link { .. } => match link.and_then(next_link) {
            Some(url) => Next::Url(url),
            None => Next::Done,
        },
        Pagination::Cursor { field, param, .. } => {
            let cursor = body.and_then(|b| b.pointer(field)).and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            match cursor {
                Some(c) if Some(c.as_str()) != last_cursor => {
                    Next::Url(with_query(first, param, &c))
                }
                _ => Next::Done,
            }
        }
        Pagination::Page { param, start, .. } if items > 0 => Next::Url(with_query(
            first,
            param,
            &start.saturating_add(page).to_string(),
        )),
        Pagination::Page { .. } => Next::Done,
    }
}

/// The first page's URL for page-number pagination (`param=start` added).
pub fn first_url(pagination: &Pagination, url: String) -> String {
    match pagination {
        Pagination::Page { param, start, .. } => with_query(&url, param, &start.to_string()),
        _ => url,
    }
}

/// The target of `rel="next"` in a `Link` header value (RFC 8288), if any.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        rest = &rest[close + 1..];
        // Parameters run up to the next link (a `,` outside quotes).
        let mut params = String::new();
        let mut quoted = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
            params.push(c);
        }
        rest = &rest[end..];
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn link_headers() {
        let gh = r#"<https://api.github.com/events?page=2>; rel="next", <https://api.github.com/events?page=10>; rel="last""#;
        assert_eq!(
            next_link(gh).as_deref(),
            Some("https://api.github.com/events?page=2")
        );
        let reordered = r#"<https://x/1>; rel="prev", <https://x/3>; title="a, b"; rel="next""#;
        assert_eq!(next_link(reordered).as_deref(), Some("https://x/3"));
        assert_eq!(next_link(r#"<https://x/9>; rel="last""#), None);
        assert_eq!(
            next_link(r#"<https://x/2>; rel=next"#).as_deref(),
            Some("https://x/2")
        );
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<broken"), None);
    }

    #[test]
    fn cursor_and_page_walks() {
        let cursor = Pagination::Cursor {
            field: "/continue/rccontinue".into(),
            param: "rccontinue".into(),
            max_pages: None,
        };
        let body = json!({"continue": {"rccontinue": "2026|5"}});
        assert_eq!(
            next(&cursor, "http://h/a?x=1", 1, None, Some(&body), 3, None),
            Next::Url("http://h/a?x=1&rccontinue=2026%7C5".into())
        );
        assert_eq!(
            next(
                &cursor,
                "http://h/a",
                2,
                None,
                Some(&body),
                3,
                Some("2026|5")
            ),
            Next::Done,
            "the same cursor twice ends the walk"
        );
        assert_eq!(
            next(&cursor, "http://h/a", 1, None, Some(&json!({})), 3, None),
            Next::Done
        );
        let page = Pagination::Page {
            param: "page".into(),
            start: 1,
            max_pages: Some(3),
        };
        assert_eq!(first_url(&page, "http://h/a".into()), "http://h/a?page=1");
        assert_eq!(
            next(&page, "http://h/a", 1, None, None, 5, None),
            Next::Url("http://h/a?page=2".into())
        );
        assert_eq!(
            next(&page, "http://h/a", 2, None, None, 0, None),
            Next::Done
        );
    }

    proptest! {
        /// Any header text: no panic, and a found target is text between `<` and `>`.
        #[test]
        fn any_link_header_parses(h in "\\PC{0,120}") {
            if let Some(t) = next_link(&h) {
                prop_assert!(!t.contains('>'));
            }
        }

        #[test]
        fn generated_next_links_are_found(a in "[a-z0-9/?=&.:]{1,30}", b in "[a-z0-9/?=&.:]{1,30}") {
            let h = format!("<{a}>; rel=\"prev\", <{b}>; rel=\"next\"");
            prop_assert_eq!(next_link(&h), Some(b));
        }
    }
}
