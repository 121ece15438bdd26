//! The framed protocol between the backend and a warm fetcher worker: length-prefixed frames,
//! each tagged with the call it belongs to, so nothing a fetcher prints can pass for an answer.
//!
//! A frame is `MAGIC` (4 bytes), the call id (u32, big-endian), the payload length (u32,
//! big-endian) and the payload (JSON). Requests carry `{"event":…,"timeout_ms":…}`; answers
//! carry the fetcher's result as JSON text. `worker.py` speaks the same format.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Marks the start of every frame; anything else where a frame should start is garbage.
pub const MAGIC: [u8; 4] = *b"RSW1";
/// Bytes before the payload: magic, call id, length.
pub const HEADER: usize = 12;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: u32,
    pub payload: Vec<u8>,
}

/// Why bytes from a worker are not a frame; the worker that sent them is killed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("garbage where a frame should start")]
    BadMagic,
    #[error("frame of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: u64, max: usize },
    #[error("an answer to another call, or a second answer")]
    WrongCall,
    #[error("the worker closed its answer pipe")]
    Closed,
    #[error("the worker's answer pipe failed: {0}")]
    Io(String),
}

/// `payload` as one frame of call `id`.
pub fn encode(id: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("requests stay under 4 GiB");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The first frame in `buf` and how many bytes it took; `Ok(None)` when `buf` holds only the
/// start of one. A header announcing more than `max` payload bytes is refused at once, before
/// any of it is read.
pub fn decode(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let magic_seen = buf.len().min(MAGIC.len());
    if buf[..magic_seen] != MAGIC[..magic_seen] {
        return Err(FrameError::BadMagic);
    }
    if buf.len() < HEADER {
        return Ok(None);
    }
    let id = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    let len = u32::from_be_bytes(buf[8..12].try_into().expect("4 bytes"));
    if len as u64 > max as u64 {
        return Err(FrameError::TooLarge {
            len: len.into(),
            max,
        });
    }
    let end = HEADER + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let payload = buf[HEADER..end].to_vec();
    Ok(Some((Frame { id, payload }, end)))
}

/// Reads frames from a pipe. Cancel-safe: bytes read are kept in its buffer until a whole
/// frame is there, so it can sit in a `select!` beside other reads.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    max: usize,
}

impl FrameReader {
    /// Frames of at most `max` payload bytes.
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            max,
        }
    }

    /// Whether bytes of a next frame are already buffered (a worker must not answer twice).
    pub fn has_leftover(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole frame.
    pub async fn next(&mut self, pipe: &mut (impl AsyncRead + Unpin)) -> Result<Frame, FrameError> {
        loop {
            if let Some((frame, used)) = decode(&self.buf, self.max)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            let want = match self.buf.len() {
                n if n < HEADER => HEADER - n,
                n => {
                    let len = u32::from_be_bytes(self.buf[8..12].try_into().expect("4 bytes"));
                    HEADER + len as usize - n
                }
            };
            // `read_buf` appends only what it read: nothing changes if this is cancelled.
            self.buf.reserve(want.min(1 << 20));
            match pipe.read_buf(&mut self.buf).await {
                Ok(0) => return Err(FrameError::Closed),
                Ok(_) => {}
                Err(e) => return Err(FrameError::Io(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_frame_round_trips_and_its_prefixes_ask_for_more() {
        let bytes = encode(7, br#"{"status_code":200}"#);
        let (frame, used) = decode(&bytes, 100).unwrap().unwrap();
        assert_eq!((frame.id, used), (7, bytes.len()));
        assert_eq!(frame.payload, br#"{"status_code":200}"#);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], 100), Ok(None), "prefix of {cut}");
        }
    }

    #[test]
    fn printed_text_and_oversized_headers_are_refused() {
        assert_eq!(decode(b"hello\n", 100), Err(FrameError::BadMagic));
        assert_eq!(decode(b"R", 100), Ok(None));
        assert_eq!(decode(b"RX", 100), Err(FrameError::BadMagic));
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode(&huge, 100),
            Err(FrameError::TooLarge {
                len: u32::MAX.into(),
                max: 100
            })
        );
    }

    #[tokio::test]
    async fn a_closed_pipe_mid_frame_is_reported() {
        let bytes = encode(1, b"[1,2,3]");
        let mut pipe: &[u8] = &bytes[..bytes.len() - 2];
        let mut reader = FrameReader::new(100);
        assert_eq!(reader.next(&mut pipe).await, Err(FrameError::Closed));
    }

    proptest! {
        /// Arbitrary bytes never panic the parser: they are a frame that fits in them, a
        /// request for more, or an error.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..40) {
            match decode(&bytes, max) {
                Ok(Some((frame, used))) => {
                    prop_assert!(used <= bytes.len());
                    prop_assert!(frame.payload.len() <= max);
                    prop_assert_eq!(used, HEADER + frame.payload.len());
                }
                Ok(None) => prop_assert!(bytes.len() < HEADER + max),
                Err(_) => {}
            }
        }

        /// Frames split at arbitrary points come out whole and in order.
        #[test]
        fn frames_survive_any_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..5),
            cuts in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let mut stream = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                stream.extend(encode(i as u32, p));
            }
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (a, b) = rest.split_at((*c).min(rest.len()));
                chunks.push(a.to_vec());
                rest = b;
            }
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let got = rt.block_on(async {
                let mut builder = tokio_test_pipe(chunks);
                let mut reader = FrameReader::new(1000);
                let mut got = Vec::new();
                for _ in 0..payloads.len() {
                    got.push(reader.next(&mut builder).await.unwrap());
                }
                (got, reader.next(&mut builder).await)
            });
            for (i, (frame, p)) in got.0.iter().zip(&payloads).enumerate() {
                prop_assert_eq!(frame.id, i as u32);
                prop_assert_eq!(&frame.payload, p);
            }
            prop_assert_eq!(got.1, Err(FrameError::Closed));
        }

        /// A read cancelled while it waits (the reader sits in a `select!` beside stderr)
        /// loses no byte and invents none.
        #[test]
        fn cancelled_reads_lose_nothing(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4),
            cut in 1usize..30,
        ) {
            use futures_util::FutureExt;
            let mut stream = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                stream.extend(encode(i as u32, p));
            }
            let mut pipe = Chunks { chunks: stream.chunks(cut).map(<[u8]>::to_vec).collect(), stutter: true, ready: false };
            let mut reader = FrameReader::new(1000);
            let mut got = Vec::new();
            while got.len() < payloads.len() {
                if let Some(frame) = reader.next(&mut pipe).now_or_never() {
                    got.push(frame.unwrap());
                }
            }
            for (i, (frame, p)) in got.iter().zip(&payloads).enumerate() {
                prop_assert_eq!(frame.id, i as u32);
                prop_assert_eq!(&frame.payload, p);
            }
        }

        /// Garbage after a good frame (a second answer, stray bytes) is never read as a frame
        /// unless it is one.
        #[test]
        fn trailing_garbage_is_refused(garbage in proptest::collection::vec(any::<u8>(), 1..40)) {
            prop_assume!(!garbage.starts_with(&MAGIC[..garbage.len().min(4)]));
            let mut bytes = encode(3, b"{}");
            let good = bytes.len();
            bytes.extend(&garbage);
            let (_, used) = decode(&bytes, 100).unwrap().unwrap();
            prop_assert_eq!(used, good);
            prop_assert_eq!(decode(&bytes[used..], 100), Err(FrameError::BadMagic));
        }
    }

    /// A reader that hands out `chunks` one read at a time, then end of file.
    fn tokio_test_pipe(chunks: Vec<Vec<u8>>) -> Chunks {
        Chunks {
            chunks: chunks.into(),
            stutter: false,
            ready: false,
        }
    }

    /// Hands out its chunks one read at a time; with `stutter`, each read is first pending.
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        stutter: bool,
        ready: bool,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.stutter && !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            self.ready = false;
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }
}
