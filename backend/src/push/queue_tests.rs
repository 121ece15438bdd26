use super::*;

#[test]
fn backoff_doubles_to_a_minute() {
    let secs: Vec<u64> = (1..=9).map(|f| backoff(f).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(0), Duration::from_secs(1));
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

#[tokio::test]
async fn pause_ends_at_shutdown() {
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    assert!(pause(Duration::from_secs(3600), &shutdown).await);
}

#[tokio::test]
async fn only_push_channels_with_a_queue_get_a_consumer() {
    use crate::fetcher::{Fetcher, FetcherEntry, Metadata};
    use crate::push::PushChannel;
    let file = |name: &str, queue: &str| {
        format!("kind = \"push\"\nname = \"{name}\"\nid_field = \"id\"\n{queue}")
    };
    let mut entries = Vec::new();
    for (name, queue) in [
        ("fed", "[queue]\nurl = \"http://127.0.0.1:1/q\"\n"),
        ("plain", ""),
        // No URL: `url_env` names a variable nobody set.
        (
            "unset",
            "[queue]\nurl_env = \"RESTREAM_TEST_NO_SUCH_QUEUE_URL\"\n",
        ),
    ] {
        let channel = PushChannel::parse(&format!("{name}.toml"), &file(name, queue)).unwrap();
        let metadata = Metadata::from_value(&channel.metadata().await.unwrap()).unwrap();
        entries.push(FetcherEntry {
            metadata,
            fetcher: std::sync::Arc::new(channel),
        });
    }
    let registry = Registry::from_entries(entries);
    assert_eq!(queued_channels(&registry), ["fed"]);
}
