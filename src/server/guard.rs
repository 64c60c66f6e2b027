//! Reads under watch: what a connection sends is scanned, frame header by frame header, before
//! hyper sees it, to learn two things h2 does not tell: whether the client has sent the HTTP/2
//! preface yet (a connection that has not, within its deadline, is dropped), and how many
//! PRIORITY frames it sends. h2 parses and discards PRIORITY frames (RFC 9113 deprecates them)
//! without any limit, so a client can keep a core busy with them; past a budget the connection
//! is closed.
//!
//! Only the 9-byte frame headers are parsed; payloads are skipped by their length. Bytes are not
//! copied or changed.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// The client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const PRIORITY: u8 = 0x2;

/// PRIORITY frames a connection may send at once, and per second after that. No client of this
/// gateway needs any: gRPC libraries send none, and RFC 9113 deprecates them.
pub(crate) const PRIORITY_BURST: f64 = 1_000.0;
pub(crate) const PRIORITY_PER_SECOND: f64 = 100.0;

/// What the guard has seen of one connection; shared with the task serving it.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    preface: AtomicBool,
}

impl Seen {
    pub(crate) fn preface(&self) -> bool {
        self.preface.load(Ordering::Relaxed)
    }
}

/// A token bucket for PRIORITY frames.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * PRIORITY_PER_SECOND;
            self.tokens = (self.tokens + refill).min(PRIORITY_BURST);
        }
        self.at = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[derive(Debug)]
enum Stage {
    /// Bytes of the preface still expected.
    Preface(usize),
    /// A frame header being collected.
    Header {
        bytes: [u8; FRAME_HEADER],
        have: usize,
    },
    /// Payload bytes still to skip.
    Payload(usize),
}

/// The parsing state of one direction (client to server).
#[derive(Debug)]
pub(crate) struct Scanner {
    stage: Stage,
    budget: Budget,
    seen: Arc<Seen>,
}

/// Why a connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Fine,
    /// Not an HTTP/2 client: the bytes are not the preface.
    NotHttp2,
    /// Over the PRIORITY frame budget.
    PriorityFlood,
}

impl Scanner {
    pub(crate) fn new(seen: Arc<Seen>) -> Self {
        Self {
            stage: Stage::Preface(PREFACE.len()),
            budget: Budget {
                tokens: PRIORITY_BURST,
                at: None,
            },
            seen,
        }
    }

    /// Follows the frame structure through `bytes`, the next bytes read.
    pub(crate) fn scan(&mut self, mut bytes: &[u8]) -> Verdict {
        while !bytes.is_empty() {
            match &mut self.stage {
                Stage::Preface(left) => {
                    let offset = PREFACE.len() - *left;
                    let n = (*left).min(bytes.len());
                    if bytes[..n] != PREFACE[offset..offset + n] {
                        return Verdict::NotHttp2;
                    }
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.seen.preface.store(true, Ordering::Relaxed);
                        self.stage = Stage::Header {
                            bytes: [0; FRAME_HEADER],
                            have: 0,
                        };
                    }
                }
                Stage::Header {
                    bytes: header,
                    have,
                } => {
                    let n = (FRAME_HEADER - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == FRAME_HEADER {
                        let len = usize::from(header[0]) << 16
                            | usize::from(header[1]) << 8
                            | usize::from(header[2]);
                        if header[3] == PRIORITY && !self.budget.take(Instant::now()) {
                            return Verdict::PriorityFlood;
                        }
                        self.stage = if len == 0 {
                            Stage::Header {
                                bytes: [0; FRAME_HEADER],
                                have: 0,
                            }
                        } else {
                            Stage::Payload(len)
                        };
                    }
                }
                Stage::Payload(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.stage = Stage::Header {
                            bytes: [0; FRAME_HEADER],
                            have: 0,
                        };
                    }
                }
            }
        }
        Verdict::Fine
    }
}

/// An IO stream whose reads pass through a [`Scanner`]. Once the scanner objects, every read
/// fails, which makes hyper close the connection.
pub(crate) struct Guarded<T> {
    inner: T,
    scanner: Scanner,
    verdict: Verdict,
}

impl<T> Guarded<T> {
    pub(crate) fn new(inner: T, seen: Arc<Seen>) -> Self {
        Self {
            inner,
            scanner: Scanner::new(seen),
            verdict: Verdict::Fine,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.verdict != Verdict::Fine {
            return Poll::Ready(Err(refused(self.verdict)));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.verdict = this.scanner.scan(&buf.filled()[before..]);
                match this.verdict {
                    Verdict::Fine => Poll::Ready(Ok(())),
                    // A client that does not speak HTTP/2 (a port scan, an HTTP/1 probe, TLS
                    // to a plaintext port) is common and harmless: debug, so that a scan cannot
                    // fill the log. A PRIORITY flood is an attack worth a warning.
                    Verdict::NotHttp2 => {
                        tracing::debug!(reason = ?this.verdict, "closing a connection");
                        Poll::Ready(Err(refused(this.verdict)))
                    }
                    verdict => {
                        tracing::warn!(reason = ?verdict, "closing a connection");
                        Poll::Ready(Err(refused(verdict)))
                    }
                }
            }
            other => other,
        }
    }
}

fn refused(verdict: Verdict) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{verdict:?}"))
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The refill of one PRIORITY frame's worth of budget.
#[cfg(test)]
const REFILL_ONE: std::time::Duration = std::time::Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            0,
            0,
            0,
            0,
            1,
        ];
        f.extend(std::iter::repeat_n(0xAB, payload));
        f
    }

    #[tokio::test(start_paused = true)]
    async fn the_preface_is_noticed_across_reads_and_frames_are_followed() {
        let seen = Arc::new(Seen::default());
        let mut scanner = Scanner::new(Arc::clone(&seen));
        assert_eq!(scanner.scan(&PREFACE[..10]), Verdict::Fine);
        assert!(!seen.preface());
        let mut rest = PREFACE[10..].to_vec();
        rest.extend(frame(0x4, 18)); // SETTINGS
        rest.extend(frame(0x1, 300)); // HEADERS
        // Split in awkward places: inside the preface, a header and a payload.
        for chunk in rest.chunks(7) {
            assert_eq!(scanner.scan(chunk), Verdict::Fine);
        }
        assert!(seen.preface());
        assert!(matches!(scanner.stage, Stage::Header { have: 0, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn not_http2_is_refused() {
        let mut scanner = Scanner::new(Arc::default());
        assert_eq!(scanner.scan(b"GET / HTTP/1.1\r\n"), Verdict::NotHttp2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_priority_flood_is_cut_and_the_budget_refills() {
        let mut scanner = Scanner::new(Arc::default());
        assert_eq!(scanner.scan(PREFACE), Verdict::Fine);
        let priority = frame(PRIORITY, 5);
        for _ in 0..PRIORITY_BURST as usize {
            assert_eq!(scanner.scan(&priority), Verdict::Fine);
        }
        assert_eq!(scanner.scan(&priority), Verdict::PriorityFlood);

        let mut scanner = Scanner::new(Arc::default());
        assert_eq!(scanner.scan(PREFACE), Verdict::Fine);
        for _ in 0..PRIORITY_BURST as usize {
            assert_eq!(scanner.scan(&priority), Verdict::Fine);
        }
        tokio::time::advance(REFILL_ONE).await;
        assert_eq!(
            scanner.scan(&priority),
            Verdict::Fine,
            "one more after 10 ms"
        );
        // Other frames never spend the budget.
        for _ in 0..10_000 {
            assert_eq!(scanner.scan(&frame(0x8, 4)), Verdict::Fine);
        }
    }
}
