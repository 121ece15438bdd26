//! What the archive sink tests share: a log to archive, a store whose checkpoint write can
//! fail (a crash between upload and checkpoint), a TCP proxy that can cut S3 off, and a read
//! of every archived seq.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use restream::archive::archiver::Targets;
use restream::archive::book::Book;
use restream::archive::{Archiver, SinkTarget, SinkType};
use restream::channel::ChannelId;
use restream::config::Archive;
use restream::store::{
    ChannelMeta, Commit, ItemStore, LogPage, LogRetention, LoggedEvent, MemoryStore, RecordWrite,
    StoreError, StoredItem,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// 2026-12-02T08:00:00Z.
pub const EIGHT: u64 = 1_796_198_400_000;
pub const HOUR: u64 = 3_600_000;

pub fn ch(id: &str) -> ChannelId {
    ChannelId::parse(id).unwrap()
}

/// Logs `(seq, time)` events on `channel`, one commit each.
pub async fn log(store: &dyn ItemStore, channel: &ChannelId, events: &[(u64, u64)]) {
    for &(seq, time) in events {
        let meta = store.meta(channel).await.unwrap();
        let message = format!(
            r#"{{"type":"new","channel":"{channel}","params":{{}},"seq":{seq},"item":{{"id":"i{seq}"}}}}"#
        );
        store
            .commit(Commit {
                expected_seq: meta.seq,
                meta: ChannelMeta {
                    seq,
                    log_floor: meta.log_floor,
                    last_event_ms: time,
                    ..ChannelMeta::default()
                },
                events: vec![LoggedEvent::new(seq, message, time)],
                retention: Some(LogRetention {
                    max_events: 10_000,
                    max_age: None,
                }),
                ..Commit::new(channel.clone())
            })
            .await
            .unwrap();
    }
}

/// A store (memory unless told), whose next `failures` checkpoint writes (`IfPresent` record writes)
/// fail as if the process died right after the upload.
pub struct Flaky {
    pub inner: Arc<dyn ItemStore>,
    pub failures: AtomicU32,
}

impl Flaky {
    pub fn new() -> Flaky {
        Flaky::over(Arc::new(MemoryStore::new(10_000)))
    }

    pub fn over(inner: Arc<dyn ItemStore>) -> Flaky {
        Flaky {
            inner,
            failures: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl ItemStore for Flaky {
    async fn load(&self, c: &ChannelId) -> Result<(ChannelMeta, Vec<StoredItem>), StoreError> {
        self.inner.load(c).await
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.inner.commit(commit).await
    }
    async fn events_after(
        &self,
        c: &ChannelId,
        after: u64,
    ) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
        self.inner.events_after(c, after).await
    }
    fn writes(&self) -> u64 {
        self.inner.writes()
    }
    fn log_capacity(&self) -> u64 {
        self.inner.log_capacity()
    }
    async fn load_budget(&self, b: &str) -> Result<Option<String>, StoreError> {
        self.inner.load_budget(b).await
    }
    async fn save_budget(&self, b: &str, usage: String) -> Result<(), StoreError> {
        self.inner.save_budget(b, usage).await
    }
    async fn meta(&self, c: &ChannelId) -> Result<ChannelMeta, StoreError> {
        self.inner.meta(c).await
    }
    async fn log_page(
        &self,
        c: &ChannelId,
        after: u64,
        limit: usize,
    ) -> Result<LogPage, StoreError> {
        self.inner.log_page(c, after, limit).await
    }
    async fn get_record(&self, ns: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_record(ns, key).await
    }
    async fn put_record(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        when: RecordWrite,
    ) -> Result<bool, StoreError> {
        let fail = when == RecordWrite::IfPresent
            && self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            return Err(StoreError::Backend("killed before the checkpoint".into()));
        }
        self.inner.put_record(ns, key, value, when).await
    }
    async fn delete_record(&self, ns: &str, key: &str) -> Result<bool, StoreError> {
        self.inner.delete_record(ns, key).await
    }
    async fn list_records(&self, ns: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.list_records(ns).await
    }
}

/// An archiver of `book` onto `target`, its clock at `now`.
pub fn archiver(book: &Arc<Book>, target: &Arc<dyn SinkTarget>, now: &Arc<AtomicU64>) -> Archiver {
    let now = now.clone();
    let targets = Targets::from([(target.sink(), target.clone())]);
    Archiver::new(book.clone(), targets).with_clock(Arc::new(move || now.load(Ordering::SeqCst)))
}

/// `[archive]` with only `sink`'s target set (`root`: the folder or the bucket).
pub fn settings(sink: SinkType, root: &str) -> Archive {
    let mut a = Archive {
        local_dir: Default::default(),
        flush_secs: 60,
        ..Archive::default()
    };
    match sink {
        SinkType::S3 => {
            a.s3_bucket = root.into();
            a.s3_prefix = "arch/".into();
        }
        SinkType::Local => a.local_dir = root.into(),
    }
    a
}

/// Every archived seq of `channel`, object by object, in key order.
pub async fn archived(target: &dyn SinkTarget, channel: &ChannelId) -> Vec<Vec<u64>> {
    let prefix = restream::archive::layout::channel_dir(channel);
    let mut out = Vec::new();
    for key in target.list(&prefix, "", 100_000).await.unwrap() {
        let body = String::from_utf8(target.get(&key).await.unwrap()).unwrap();
        let seqs: Vec<u64> = body
            .lines()
            .map(|l| restream::history::from_line(l).unwrap().seq)
            .collect();
        assert_eq!(
            restream::archive::layout::first_seq(&key),
            seqs.first().copied(),
            "{key} is named after its first event"
        );
        out.push(seqs);
    }
    out
}

/// A loopback TCP proxy to `upstream` that can be cut off: while down it drops every
/// connection, open ones included.
pub struct Proxy {
    pub url: String,
    down: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (down, watch) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut watch = watch.clone();
                if *watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Proxy { url, down, task }
    }

    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
