//! One history event as JSON text: the message clients received, with its time first —
//! `{"time":"2026-12-02T08:00:00.123Z","type":"new","channel":…,"params":…,"seq":…,…}`. The
//! history API answers with these and the archive stores them one per line (NDJSON).

use crate::store::LoggedEvent;

/// Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-12-02T05:40:00.123Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// An RFC 3339 time (any offset, any fraction) as unix milliseconds; `None` when it is not
/// one or lies before 1970.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The event as one JSON object: its message with `"time"` in front.
pub fn to_line(event: &LoggedEvent) -> String {
    let body = event.message.trim_start();
    let rest = body.strip_prefix('{').unwrap_or(body).trim_start();
    let time = rfc3339_ms(event.time_ms);
    match rest.starts_with('}') {
        true => format!(r#"{{"time":"{time}"{rest}"#),
        false => format!(r#"{{"time":"{time}",{rest}"#),
    }
}

/// Why a line is not a history event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LineError {
    #[error("not a JSON object: {0}")]
    NotAnObject(String),
    #[error("no \"time\" as an RFC 3339 string")]
    NoTime,
    #[error("no \"seq\" as a positive integer")]
    NoSeq,
}

/// A line written by [`to_line`] back into the event (the message without `"time"`).
pub fn from_line(line: &str) -> Result<LoggedEvent, LineError> {
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| LineError::NotAnObject(e.to_string()))?;
    let time_ms = value
        .remove("time")
        .and_then(|t| t.as_str().and_then(parse_rfc3339))
        .ok_or(LineError::NoTime)?;
    let seq = value
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .filter(|s| *s > 0)
        .ok_or(LineError::NoSeq)?;
    Ok(LoggedEvent::new(
        seq,
        serde_json::Value::Object(value).to_string(),
        time_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_line_puts_the_time_first_and_reads_back() {
        let e = LoggedEvent::new(
            7,
            r#"{"type":"new","seq":7,"item":{"id":"a"}}"#,
            1_764_662_400_123,
        );
        let line = to_line(&e);
        assert_eq!(
            line,
            r#"{"time":"2025-12-02T08:00:00.123Z","type":"new","seq":7,"item":{"id":"a"}}"#
        );
        let back = from_line(&line).unwrap();
        assert_eq!((back.seq, back.time_ms), (7, e.time_ms));
        let a: serde_json::Value = serde_json::from_str(&back.message).unwrap();
        let b: serde_json::Value = serde_json::from_str(&e.message).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn times_parse_with_any_offset_and_fraction() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:01.5+01:00"), Some(1500));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(matches!(from_line("[1]"), Err(LineError::NotAnObject(_))));
        assert_eq!(from_line(r#"{"seq":1}"#), Err(LineError::NoTime));
        assert_eq!(
            from_line(r#"{"time":"1970-01-01T00:00:01Z","seq":0}"#),
            Err(LineError::NoSeq)
        );
    }

    proptest! {
        #[test]
        fn any_event_round_trips(seq in 1u64..u64::MAX / 2, ms in 0u64..253_402_300_799_000, text in ".{0,40}") {
            let message = serde_json::json!({"type": "new", "seq": seq, "item": {"t": text}}).to_string();
            let back = from_line(&to_line(&LoggedEvent::new(seq, message.clone(), ms))).unwrap();
            prop_assert_eq!((back.seq, back.time_ms), (seq, ms));
            let a: serde_json::Value = serde_json::from_str(&back.message).unwrap();
            let b: serde_json::Value = serde_json::from_str(&message).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn any_bytes_are_an_error_or_an_event(line in ".{0,200}") {
            let _ = from_line(&line);
        }
    }
}
