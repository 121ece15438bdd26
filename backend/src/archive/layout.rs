//! Where archived events go: `channel=<percent-encoded id>/date=YYYY-MM-DD/hour=HH/<first
//! seq, 20 digits>.ndjson` (Hive-style partitions, so Athena and DuckDB read them directly),
//! and how an object is cut from a channel's log (one UTC hour, at most `max_object_bytes`).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::channel::ChannelId;
use crate::store::LoggedEvent;

/// Everything but `A-Z a-z 0-9 - _ .` is encoded: a partition value holds no `/`, `=`, `?`,
/// `&` or `%` of its own, and decodes back to the id.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

const HOUR_MS: u64 = 3_600_000;

/// A channel id as a partition value.
pub fn encode_channel(channel: &str) -> String {
    utf8_percent_encode(channel, ENCODED).to_string()
}

/// A partition value back to the channel id, when it is one.
pub fn decode_channel(value: &str) -> Option<ChannelId> {
    let text = percent_decode_str(value).decode_utf8().ok()?;
    ChannelId::parse(&text).ok()
}

/// The folder of every object of `channel` (ends with `/`).
pub fn channel_dir(channel: &ChannelId) -> String {
    format!("channel={}/", encode_channel(channel.as_str()))
}

/// The UTC hour (hours since the epoch) of a time in unix ms.
pub fn hour_of(time_ms: u64) -> u64 {
    time_ms / HOUR_MS
}

/// The first unix ms after the hour of `time_ms`.
pub fn hour_end_ms(time_ms: u64) -> u64 {
    (hour_of(time_ms) + 1) * HOUR_MS
}

/// The folder of `channel`'s objects of the hour of `time_ms` (ends with `/`).
pub fn hour_dir(channel: &ChannelId, time_ms: u64) -> String {
    let secs = i64::try_from(time_ms / 1000).unwrap_or(i64::MAX);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{}date={:04}-{:02}-{:02}/hour={:02}/",
        channel_dir(channel),
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

/// The key (relative to the sink's root) of the object whose first event is `first`.
pub fn object_key(channel: &ChannelId, first: &LoggedEvent) -> String {
    format!(
        "{}{:020}.ndjson",
        hour_dir(channel, first.time_ms),
        first.seq
    )
}

/// The first seq of an object, from its key; `None` for anything that is not an object.
pub fn first_seq(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let digits = name.strip_suffix(".ndjson")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What to do with the events at the head of a sink's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Write an object of the first `n` events now.
    Write(usize),
    /// The object may still grow: wait for more events or for time to pass.
    Wait,
    /// Every event given fits one object and more follow in the log: read further.
    NeedMore,
}

/// How the head of a backlog becomes an object: events of one UTC hour, at most `max_bytes`
/// of lines (one event at least), written when full, when a later hour has started (by a
/// later event or by the clock) or when the first event is `flush_ms` old. `lines[i]` is
/// `events[i]`'s line; `more`: the log holds events after the last one given.
pub fn cut(
    events: &[LoggedEvent],
    lines: &[String],
    more: bool,
    now_ms: u64,
    flush_ms: u64,
    max_bytes: u64,
) -> Cut {
    let Some(first) = events.first() else {
        return Cut::Wait;
    };
    let hour = hour_of(first.time_ms);
    let mut bytes = 0u64;
    for (i, (event, line)) in events.iter().zip(lines).enumerate() {
        bytes += line.len() as u64 + 1;
        if i > 0 && (hour_of(event.time_ms) != hour || bytes > max_bytes) {
            return Cut::Write(i);
        }
    }
    if more {
        return Cut::NeedMore;
    }
    let due = now_ms >= hour_end_ms(first.time_ms)
        || now_ms.saturating_sub(first.time_ms) >= flush_ms
        || bytes >= max_bytes;
    match due {
        true => Cut::Write(events.len()),
        false => Cut::Wait,
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
