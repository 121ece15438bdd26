//! The local sink: objects as files under `archive.local_dir`, the key's folders as folders.
//! A file is written beside its final name and renamed over it, so a reader sees either the
//! old object or the new one whole.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::layout::first_seq;
use super::target::{SinkTarget, TargetError};
use super::SinkType;

pub struct LocalTarget {
    root: PathBuf,
}

impl LocalTarget {
    pub fn new(root: impl Into<PathBuf>) -> LocalTarget {
        LocalTarget { root: root.into() }
    }
}

fn failed(what: &'static str, e: impl std::fmt::Display) -> TargetError {
    TargetError {
        sink: "local",
        what,
        detail: e.to_string(),
    }
}

/// Keys hold only `A-Z a-z 0-9 - _ . % = /` (see `layout`); anything else, or a `..`, is not
/// ours.
fn safe(key: &str) -> bool {
    key.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.%=/".contains(&b))
}

fn write(root: &Path, key: &str, body: &[u8]) -> std::io::Result<()> {
    let path = root.join(key);
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    // A dot name ends in `.tmp`: never listed as an object.
    let temp = dir.join(format!(".{name}.{}.tmp", rand::random::<u64>()));
    let written = std::fs::write(&temp, body).and_then(|_| {
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, &path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Sorted names in `dir` (none when it does not exist).
fn names(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str() {
            if !name.starts_with('.') {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Keys under `prefix` (`channel=…/`: folders `date=…/hour=…/` then objects) after
/// `start_after`, walking only folders that can hold one.
fn list(root: &Path, prefix: &str, start_after: &str, max: usize) -> std::io::Result<Vec<String>> {
    // A folder whose keys all sort before `start_after` is skipped unread.
    let worth = |folder: &str| folder > start_after || start_after.starts_with(folder);
    let mut out = Vec::new();
    for date in names(&root.join(prefix))? {
        let date_dir = format!("{prefix}{date}/");
        if !worth(&date_dir) {
            continue;
        }
        for hour in names(&root.join(&date_dir))? {
            let hour_dir = format!("{date_dir}{hour}/");
            if !worth(&hour_dir) {
                continue;
            }
            for name in names(&root.join(&hour_dir))? {
                let key = format!("{hour_dir}{name}");
                if key.as_str() > start_after && first_seq(&key).is_some() {
                    out.push(key);
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl SinkTarget for LocalTarget {
    fn sink(&self) -> SinkType {
        SinkType::Local
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), TargetError> {
        if !safe(key) {
            return Err(failed("write objects", format!("refused key {key:?}")));
        }
        let (root, key) = (self.root.clone(), key.to_string());
        tokio::task::spawn_blocking(move || write(&root, &key, &body))
            .await
            .map_err(|e| failed("write objects", e))?
            .map_err(|e| failed("write objects", e))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        max: usize,
    ) -> Result<Vec<String>, TargetError> {
        if !safe(prefix.trim_end_matches('/')) {
            return Err(failed("list objects", format!("refused prefix {prefix:?}")));
        }
        let (root, prefix, start) = (
            self.root.clone(),
            prefix.to_string(),
            start_after.to_string(),
        );
        tokio::task::spawn_blocking(move || list(&root, &prefix, &start, max))
            .await
            .map_err(|e| failed("list objects", e))?
            .map_err(|e| failed("list objects", e))
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, TargetError> {
        if !safe(key) {
            return Err(failed("read objects", format!("refused key {key:?}")));
        }
        tokio::fs::read(self.root.join(key))
            .await
            .map_err(|e| failed("read objects", e))
    }
}
