//! `restream fetchers check`: every channel file (`fetchers.channels_dir`) and every process
//! fetcher (`fetchers.dir`) validated, each problem as `path:line: message`, so CI and an
//! editor can point at it. A file is checked whole: syntax, fields, placeholders, the
//! transform's jq, then the metadata a fetcher answers and clashes of channel names.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{FetcherKind, Settings};
use crate::fetcher::http::{ChannelFileError, HttpLimits};
use crate::fetcher::HttpFetcher;
use crate::push::{spec::is_push_file, PushChannel};
use crate::startup::load_registry_reporting;

/// What `check` found: the report to print and how many problems it lists.
pub struct CheckReport {
    pub text: String,
    pub problems: usize,
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line that sets `field` (`field = …`, `[field]`, `[field.…]`), else 1.
pub fn field_line(text: &str, field: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
                || l.strip_prefix('[')
                    .and_then(|l| l.strip_prefix(field))
                    .is_some_and(|rest| rest.starts_with(']') || rest.starts_with('.'))
        })
        .map_or(1, |i| i + 1)
}

/// The first line of an error's text without the file name it starts with.
fn message(error: &dyn std::fmt::Display, label: &str) -> String {
    let text = error.to_string();
    let text = text
        .strip_prefix(label)
        .and_then(|t| t.strip_prefix(": "))
        .unwrap_or(&text)
        .to_string();
    // toml's errors draw the line under the text; keep the sentence.
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .rfind(|l| !l.trim_start().starts_with('|') && !l.contains("-->"))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Checks one channel file's text; `Err` is `(line, message)`.
pub fn check_channel_text(
    label: &str,
    text: &str,
    limits: &HttpLimits,
) -> Result<(), (usize, String)> {
    let timeout = std::time::Duration::from_secs(1);
    if is_push_file(text) {
        return PushChannel::parse(label, text).map(|_| ()).map_err(|e| {
            let line = match &e {
                crate::push::spec::PushFileError::Invalid { source, .. } => {
                    source.span().map_or(1, |s| line_of(text, s.start))
                }
                crate::push::spec::PushFileError::Field { field, .. } => field_line(text, field),
                _ => 1,
            };
            (line, message(&e, label))
        });
    }
    HttpFetcher::parse(label, text, timeout, limits)
        .map(|_| ())
        .map_err(|e: ChannelFileError| {
            let line = match (e.span(), e.field()) {
                (Some(span), _) => line_of(text, span.start),
                (None, Some(field)) => field_line(text, field),
                _ => 1,
            };
            (line, message(&e, label))
        })
}

/// Every channel file and process fetcher of `settings`.
pub async fn check(settings: &Settings) -> anyhow::Result<CheckReport> {
    let mut out = String::new();
    let mut problems = 0;
    let limits = HttpLimits::new(&settings.declarative);
    let dir = &settings.fetchers.channels_dir;
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", dir.display()),
    };
    files.sort();
    for path in &files {
        let label = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Err(e) => {
                problems += 1;
                writeln!(out, "{shown}:1: cannot read: {e}")?;
            }
            Ok(text) => match check_channel_text(&label, &text, &limits) {
                Ok(()) => writeln!(out, "ok {shown}")?,
                Err((line, why)) => {
                    problems += 1;
                    writeln!(out, "{shown}:{line}: {why}")?;
                }
            },
        }
    }
    // Metadata and name clashes: what the running service would load (no Lambda here).
    let mut local = settings.clone();
    local
        .fetchers
        .kinds
        .retain(|k| matches!(k, FetcherKind::Process | FetcherKind::Http));
    if !local.fetchers.kinds.is_empty() {
        let (_, report) = load_registry_reporting(&local).await?;
        for (label, outcome) in report {
            let is_file = label.ends_with(".toml");
            let shown = match is_file {
                true => dir.join(&label).display().to_string(),
                false => fetcher_main(&settings.fetchers.dir, &label),
            };
            match outcome {
                Ok(_) if !is_file => writeln!(out, "ok {shown}")?,
                Ok(_) => {}
                Err(why) => {
                    problems += 1;
                    let why = why.to_string();
                    // "field `params.limit`: …" points at that field's line.
                    let line = match (is_file, why.split_once("field `")) {
                        (true, Some((_, rest))) => {
                            let field = rest.split('`').next().unwrap_or("");
                            let text =
                                std::fs::read_to_string(dir.join(&label)).unwrap_or_default();
                            field_line(&text, field)
                        }
                        _ => 1,
                    };
                    writeln!(out, "{shown}:{line}: {why}")?;
                }
            }
        }
    }
    writeln!(
        out,
        "{} channel files checked, {problems} problem{}",
        files.len(),
        if problems == 1 { "" } else { "s" }
    )?;
    Ok(CheckReport {
        text: out,
        problems,
    })
}

fn fetcher_main(dir: &Path, label: &str) -> String {
    dir.join(label).join("main.py").display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_their_line() {
        let limits = HttpLimits::default();
        let text = "name = \"t\"\nurl = \"https://x.invalid/{nope}\"\n";
        let (line, why) = check_channel_text("t.toml", text, &limits).unwrap_err();
        assert_eq!(line, 2);
        assert!(why.contains("nope"), "{why}");
        let text = "name = \"t\"\nurl = \"https://x.invalid/\"\n\n[pagination]\ntype = \"cursor\"\nfield = \"c\"\nparam = \"p\"\n";
        assert_eq!(
            check_channel_text("t.toml", text, &limits).unwrap_err().0,
            4
        );
        let text = "name = \"t\"\nurl = \"https://x.invalid/\"\ntransform = '.['\n";
        assert_eq!(
            check_channel_text("t.toml", text, &limits).unwrap_err().0,
            3
        );
        let text = "name = \"t\"\nurl = \"https://x.invalid/\"\nbogus = 1\n";
        let (line, why) = check_channel_text("t.toml", text, &limits).unwrap_err();
        assert_eq!(line, 3);
        assert!(why.contains("bogus"), "{why}");
        let text = "kind = \"push\"\nname = \"p\"\nmode = \"sideways\"\n";
        assert_eq!(
            check_channel_text("p.toml", text, &limits).unwrap_err().0,
            3
        );
        assert!(check_channel_text(
            "ok.toml",
            "name = \"t\"\nurl = \"https://x.invalid/\"\n",
            &limits
        )
        .is_ok());
    }

    #[test]
    fn field_lines() {
        let text = "a = 1\n[params.q]\nx = 2\n  items = \"/x\"\n";
        assert_eq!(field_line(text, "params"), 2);
        assert_eq!(field_line(text, "items"), 4);
        assert_eq!(field_line(text, "missing"), 1);
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
    }
}
