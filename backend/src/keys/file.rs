//! The default key store: a local JSON file, re-read when it changes.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{parse_keys, KeyMap, KeyStore, KeyStoreError};
use crate::fetcher::Keys;

/// Keys from a local JSON file, re-read when its modification time changes. A missing file
/// means "no keys"; a broken file keeps the last good keys and reports the error.
pub struct FileKeyStore {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, KeyMap)>,
}

impl FileKeyStore {
    /// Opens the store at startup: a world-readable or broken file is an error here, so the
    /// service refuses to start rather than run with exposed or missing keys.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileKeyStore, KeyStoreError> {
        let store = FileKeyStore::new(path);
        store.refresh()?;
        Ok(store)
    }

    /// A store that reads the file lazily (missing file = no keys).
    pub fn new(path: impl Into<PathBuf>) -> FileKeyStore {
        FileKeyStore {
            path: path.into(),
            cache: Mutex::new((None, KeyMap::new())),
        }
    }

    fn refresh(&self) -> Result<(), KeyStoreError> {
        let display = self.path.display().to_string();
        let metadata = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                *self.cache.lock().expect("keys lock") = (None, KeyMap::new());
                return Ok(());
            }
            Err(source) => {
                return Err(KeyStoreError::Read {
                    path: display,
                    source,
                })
            }
        };
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode();
            if mode & 0o004 != 0 {
                return Err(KeyStoreError::WorldReadable {
                    path: display,
                    mode: mode & 0o777,
                });
            }
        }
        let modified = metadata.modified().ok();
        if modified.is_some() && self.cache.lock().expect("keys lock").0 == modified {
            return Ok(());
        }
        let text = std::fs::read(&self.path).map_err(|source| KeyStoreError::Read {
            path: display.clone(),
            source,
        })?;
        let parsed = parse_keys(&text).map_err(|problem| KeyStoreError::Invalid {
            path: display,
            problem,
        })?;
        *self.cache.lock().expect("keys lock") = (modified, parsed);
        Ok(())
    }
}

#[async_trait]
impl KeyStore for FileKeyStore {
    async fn keys_for(&self, channel: &str) -> Result<Keys, KeyStoreError> {
        let result = self.refresh();
        let keys = self
            .cache
            .lock()
            .expect("keys lock")
            .1
            .get(channel)
            .cloned()
            .unwrap_or_default();
        match result {
            Ok(()) => Ok(keys),
            // Keep serving the last good keys; the caller logs the problem.
            Err(e) if !keys.is_empty() => {
                tracing::warn!(error = %e, "keeping last good keys");
                Ok(keys)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn write_private(path: &std::path::Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn refuses_world_readable_and_broken_files_at_startup() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        assert!(
            FileKeyStore::open(&path).is_ok(),
            "a missing file means no keys"
        );
        std::fs::write(&path, r#"{"a": {"k": "secret-value"}}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = FileKeyStore::open(&path).err().unwrap().to_string();
        assert!(
            e.contains("chmod 600") && !e.contains("secret-value"),
            "{e}"
        );
        write_private(&path, r#"{"a": {"k": "secret-value"}, "b": 5}"#);
        let e = FileKeyStore::open(&path).err().unwrap().to_string();
        assert!(
            e.contains("entry \"b\"") && !e.contains("secret-value"),
            "{e}"
        );
        write_private(&path, r#"{"a": {"k": "secret-value"}}"#);
        assert!(FileKeyStore::open(&path).is_ok());
    }

    #[tokio::test]
    async fn reads_and_keeps_last_good_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let store = FileKeyStore::new(&path);
        assert!(store.keys_for("nyt-top").await.unwrap().is_empty());
        write_private(&path, r#"{"nyt-top": {"api-key": "abc"}}"#);
        assert_eq!(
            store.keys_for("nyt-top").await.unwrap()["api-key"].expose_secret(),
            "abc"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_private(&path, "{broken");
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            store.keys_for("nyt-top").await.unwrap()["api-key"].expose_secret(),
            "abc"
        );
        assert!(matches!(
            store.keys_for("other").await,
            Err(KeyStoreError::Invalid { .. })
        ));
    }
}
