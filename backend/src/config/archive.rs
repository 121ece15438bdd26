//! `[archive]`: where archive sinks write (a local folder, an S3 bucket), how objects are cut
//! (`flush_secs`, `max_object_bytes`), the sinks the settings turn on and where history reads
//! archived ranges from (docs/history.md); the same in the file and typed forms.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SettingsError;
use crate::archive::SinkType;
use crate::channel::ChannelId;

/// Which sink history reads archived ranges from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// S3 when `s3_bucket` is set, else the local folder (when `local_dir` is set).
    #[default]
    Auto,
    S3,
    Local,
}

/// One sink the settings turn on (the admin API cannot turn it off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkEntry {
    /// The canonical channel id (`name` or `name?k=v&…`, as `GET /channels/{name}` shows it).
    pub channel: String,
    #[serde(rename = "type")]
    pub sink: SinkType,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Folder of the local sink ("": no local sink).
    pub local_dir: PathBuf,
    /// Bucket of the S3 sink ("": no S3 sink).
    pub s3_bucket: String,
    /// Prefix of every object key in the bucket: empty, or ending with `/`.
    pub s3_prefix: String,
    /// An object is written once its oldest event is this many seconds old (sooner when it
    /// is full or its hour is over).
    pub flush_secs: u64,
    /// Largest object, in bytes (an event larger than this goes alone in its object).
    pub max_object_bytes: u64,
    /// Sinks turned on by the settings: `[{ channel = "<canonical id>", type = "local" | "s3" }]`.
    pub sinks: Vec<SinkEntry>,
    /// Where history reads archived ranges from: `auto`, `s3` or `local`.
    pub read_from: ReadFrom,
    /// Events a channel's log keeps at most beyond its retention's count while one of its
    /// sinks has not archived them (an outage of the sink's target loses nothing up to this).
    pub max_held_events: u64,
}

impl Default for Archive {
    fn default() -> Archive {
        Archive {
            local_dir: PathBuf::from("restream-data/archive"),
            s3_bucket: String::new(),
            s3_prefix: "archive/".into(),
            flush_secs: 60,
            max_object_bytes: 4 << 20,
            sinks: Vec::new(),
            read_from: ReadFrom::Auto,
            max_held_events: 100_000,
        }
    }
}

/// The smallest `archive.max_object_bytes`.
pub const MIN_OBJECT_BYTES: u64 = 1024;

impl Archive {
    /// Every check of the section, naming the key at fault.
    pub(super) fn check(self) -> Result<Archive, SettingsError> {
        if !self.s3_prefix.is_empty() && !self.s3_prefix.ends_with('/') {
            return Err(SettingsError::Invalid {
                key: "archive.s3_prefix",
                problem: "must be empty or end with /",
            });
        }
        if self.flush_secs == 0 {
            return Err(SettingsError::BelowOne {
                key: "archive.flush_secs",
            });
        }
        if self.max_object_bytes < MIN_OBJECT_BYTES {
            return Err(SettingsError::Invalid {
                key: "archive.max_object_bytes",
                problem: "must be at least 1024",
            });
        }
        for entry in &self.sinks {
            if ChannelId::parse(&entry.channel).is_err() {
                return Err(SettingsError::Invalid {
                    key: "archive.sinks",
                    problem: "a channel is not a canonical channel id (name or name?k=v&…)",
                });
            }
            if !self.has_target(entry.sink) {
                return Err(missing_target(entry.sink));
            }
        }
        match self.read_from {
            ReadFrom::S3 if !self.has_target(SinkType::S3) => Err(missing_target(SinkType::S3)),
            ReadFrom::Local if !self.has_target(SinkType::Local) => {
                Err(missing_target(SinkType::Local))
            }
            _ => Ok(self),
        }
    }

    /// Whether sinks of `sink` type have somewhere to write.
    pub fn has_target(&self, sink: SinkType) -> bool {
        match sink {
            SinkType::S3 => !self.s3_bucket.is_empty(),
            SinkType::Local => !self.local_dir.as_os_str().is_empty(),
        }
    }

    /// The sink history reads from, `None` when it has none.
    pub fn read_sink(&self) -> Option<SinkType> {
        match self.read_from {
            ReadFrom::S3 => Some(SinkType::S3),
            ReadFrom::Local => Some(SinkType::Local),
            ReadFrom::Auto if self.has_target(SinkType::S3) => Some(SinkType::S3),
            ReadFrom::Auto if self.has_target(SinkType::Local) => Some(SinkType::Local),
            ReadFrom::Auto => None,
        }
    }
}

fn missing_target(sink: SinkType) -> SettingsError {
    match sink {
        SinkType::S3 => SettingsError::Invalid {
            key: "archive.s3_bucket",
            problem: "must be set for an s3 sink (archive.sinks, archive.read_from)",
        },
        SinkType::Local => SettingsError::Invalid {
            key: "archive.local_dir",
            problem: "must be set for a local sink (archive.sinks, archive.read_from)",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(channel: &str, sink: SinkType) -> SinkEntry {
        SinkEntry {
            channel: channel.into(),
            sink,
        }
    }

    #[test]
    fn defaults_pass_and_read_locally() {
        let a = Archive::default().check().unwrap();
        assert_eq!(a.read_sink(), Some(SinkType::Local));
    }

    #[test]
    fn each_check_names_its_key() {
        let bad = |a: Archive| a.check().unwrap_err().to_string();
        let d = Archive::default;
        let e = bad(Archive {
            s3_prefix: "x".into(),
            ..d()
        });
        assert!(e.contains("archive.s3_prefix"), "{e}");
        let e = bad(Archive {
            flush_secs: 0,
            ..d()
        });
        assert!(e.contains("archive.flush_secs"), "{e}");
        let e = bad(Archive {
            max_object_bytes: 1023,
            ..d()
        });
        assert!(e.contains("archive.max_object_bytes"), "{e}");
        let e = bad(Archive {
            sinks: vec![entry("usgs?b=1&a=2", SinkType::Local)],
            ..d()
        });
        assert!(e.contains("archive.sinks"), "{e}");
        let e = bad(Archive {
            sinks: vec![entry("usgs", SinkType::S3)],
            ..d()
        });
        assert!(e.contains("archive.s3_bucket"), "{e}");
        let e = bad(Archive {
            local_dir: PathBuf::new(),
            read_from: ReadFrom::Local,
            ..d()
        });
        assert!(e.contains("archive.local_dir"), "{e}");
        let ok = Archive {
            s3_bucket: "b".into(),
            s3_prefix: String::new(),
            sinks: vec![entry("usgs?a=1&b=2", SinkType::S3)],
            ..d()
        };
        assert_eq!(ok.check().unwrap().read_sink(), Some(SinkType::S3));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own error type
    fn the_section_loads_from_file_and_env_and_round_trips() {
        use crate::config::Settings;
        use std::path::Path;
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "a.toml",
                "[archive]\ns3_prefix = \"events/\"\nflush_secs = 30\nsinks = [{ channel = \"usgs?feed=all_hour\", type = \"s3\" }, { channel = \"nyt\", type = \"local\" }]\nread_from = \"local\"\n",
            )?;
            jail.set_env("RESTREAM_ARCHIVE__S3_BUCKET", "my-archive");
            let s = Settings::load(Some(Path::new("a.toml"))).map_err(|e| e.to_string())?;
            let a = &s.archive;
            assert_eq!(
                (a.s3_bucket.as_str(), a.s3_prefix.as_str()),
                ("my-archive", "events/")
            );
            assert_eq!((a.flush_secs, a.max_object_bytes), (30, 4 << 20));
            assert_eq!(a.sinks[0], entry("usgs?feed=all_hour", SinkType::S3));
            assert_eq!(a.sinks[1], entry("nyt", SinkType::Local));
            assert_eq!(a.read_sink(), Some(SinkType::Local));
            jail.create_file("again.toml", &s.to_toml().expect("serializes"))?;
            let back = Settings::load(Some(Path::new("again.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(back.archive, s.archive);
            jail.set_env("RESTREAM_ARCHIVE__S3_BUCKET", "");
            let e = Settings::load(Some(Path::new("a.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("archive.s3_bucket"),
                "an s3 sink without a bucket: {e}"
            );
            jail.create_file(
                "bad.toml",
                "[archive]\nsinks = [{ channel = \"nyt\", type = \"ftp\" }]\n",
            )?;
            assert!(
                Settings::load(Some(Path::new("bad.toml"))).is_err(),
                "an unknown type"
            );
            Ok(())
        });
    }
}
