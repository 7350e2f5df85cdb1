//! Client connections that must make progress, with bounded buffers.
//!
//! hyper times out a client that is slow to send its headers, but nothing
//! times out a reply the client does not take: a client that pipelines
//! requests and never reads the answers holds its connection (and a slot
//! under `--max-connections`) for as long as it likes. And hyper's default
//! read buffer grows to ~400 KiB for a header block that never ends.
//!
//! So each accepted connection gets three bounds:
//!
//! - [`Guarded`] fails a write that has made no progress for
//!   [`Limits::write_timeout`], which ends the connection;
//! - a small kernel send buffer ([`Limits::send_buffer`]) and hyper's write
//!   queue bound the replies answered ahead of a client that is not
//!   reading, so it reaches that stall quickly;
//! - hyper's buffer cap ([`Limits::max_buf_size`]) bounds the read buffer:
//!   a header block larger than it gets `431 Request Header Fields Too
//!   Large`.
//!
//! Its [`Socket`] also keeps what its reads tell ([`Reads`]), so that
//! [`crate::slots`] can tell a connection that is idle, waiting for a
//! client that sends nothing, from one with a request arriving or not yet
//! read: [`Reads::silent_since`] also peeks at the socket, for bytes that
//! have come and that nobody has read yet.
//!
//! There is no per-address cap: behind an ingress every client has the
//! ingress's address.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// hyper's read buffer cap and write queue bound. Provider headers are 1 to
/// 3 KiB (a Pub/Sub push with its bearer token is the largest), and an
/// ingress adds a few hundred bytes; nginx's default refuses a single header
/// line over 8 KiB. 16 KiB is several times any real header block, and
/// 1,024 connections with unfinished headers then hold at most 16 MiB of
/// read buffers, where hyper's default (~400 KiB each) let them hold 400.
pub const MAX_BUF_SIZE: usize = 16 * 1024;

/// `SO_SNDBUF` for client connections. Replies are a line of text, or a few
/// KiB for `/metrics`; Linux doubles the value and stops auto-tuning it (up
/// to 4 MiB by default), so a client that does not read fills it, and
/// stalls, after a few dozen KiB rather than megabytes.
pub const SEND_BUFFER: usize = 16 * 1024;

/// The bounds put on every client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A client must send a request's headers within this (also closes idle
    /// keep-alive connections).
    pub header_timeout: Duration,
    /// A write that has made no progress for this long fails and closes the
    /// connection: the client is not reading its replies.
    pub write_timeout: Duration,
    /// hyper's read buffer cap and write queue bound (at least 8192).
    pub max_buf_size: usize,
    /// `SO_SNDBUF` of each connection.
    pub send_buffer: usize,
}

impl Limits {
    /// The bounds for `header_timeout`. A client gets as long to take a
    /// reply as to send its headers: both are "the client's turn", and a
    /// client on a link that moves no byte for that long is gone anyway.
    pub fn new(header_timeout: Duration) -> Limits {
        Limits {
            header_timeout,
            write_timeout: header_timeout,
            max_buf_size: MAX_BUF_SIZE,
            send_buffer: SEND_BUFFER,
        }
    }
}

/// An HTTP/1 connection builder with `limits` applied; the caller sets
/// keep-alive and serves.
pub fn http1_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_buf_size);
    builder
}

/// What a connection's reads tell.
#[derive(Debug, Default)]
pub struct Reads {
    /// Reads that brought bytes.
    count: AtomicU64,
    /// Whether the last read found nothing to read: everything the client
    /// sent has been read, and it is silent.
    waiting: AtomicBool,
    /// The connection's socket, while the connection holds it.
    socket: OnceLock<Weak<Mutex<TcpStream>>>,
}

impl Reads {
    /// Reads that brought bytes so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Whether the last read found nothing to read.
    pub fn waiting(&self) -> bool {
        self.waiting.load(Relaxed)
    }

    /// A read brought bytes (`true`) or found none (`false`).
    pub fn read(&self, bytes: bool) {
        if bytes {
            self.count.fetch_add(1, Relaxed);
        }
        self.waiting.store(!bytes, Relaxed);
    }

    /// Whether the client has been silent since `count` reads had brought
    /// bytes: the last read found nothing, no read has brought bytes since,
    /// and no byte waits unread in the socket's receive buffer. The last
    /// is what the reads cannot tell: a next request that arrived after
    /// the last read, before the connection's task has run again (under
    /// load, a while). A non-blocking `MSG_PEEK` of one byte can.
    ///
    /// The peek and the second look at the reads are made under the
    /// socket's lock, which a read holds until it has recorded what it
    /// found ([`Socket`]): a read that has just taken a request's bytes
    /// from the socket cannot pass for silence. The end of the stream or
    /// an error is silence; so is a socket closed or never given.
    pub fn silent_since(&self, count: u64) -> bool {
        let silent = || self.waiting() && self.count() == count;
        if !silent() {
            return false;
        }
        let Some(socket) = self.socket.get().and_then(Weak::upgrade) else {
            return true;
        };
        let socket = lock(&socket);
        let mut byte = [MaybeUninit::uninit()];
        let peeked = socket2::SockRef::from(&*socket)
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        !matches!(peeked, Ok(n) if n > 0) && silent()
    }
}

/// A client's socket, shared between the connection, which reads and writes
/// it and records what its reads find in its [`Reads`], and those
/// [`Reads`], which peek at it ([`Reads::silent_since`]) without owning it:
/// once the connection drops it, it is closed, and no peek can reach
/// another socket given the same descriptor. The lock is held for one poll,
/// never across an `.await`; only a peek ever waits for it.
#[derive(Debug)]
pub struct Socket {
    stream: Arc<Mutex<TcpStream>>,
    reads: Arc<Reads>,
}

impl Socket {
    fn lock(&self) -> MutexGuard<'_, TcpStream> {
        lock(&self.stream)
    }
}

/// A socket's lock; a thread that panicked holding it left nothing half
/// done (a poll is one system call).
fn lock(socket: &Mutex<TcpStream>) -> MutexGuard<'_, TcpStream> {
    socket.lock().unwrap_or_else(|e| e.into_inner())
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut stream = self.lock();
        let before = buf.filled().len();
        let result = Pin::new(&mut *stream).poll_read(cx, buf);
        // Recorded before the lock is let go: see Reads::silent_since.
        match &result {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.reads.read(true),
            Poll::Pending => self.reads.read(false),
            Poll::Ready(_) => {}
        }
        drop(stream);
        result
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.lock()).poll_shutdown(cx)
    }
}

/// Prepare an accepted connection: no Nagle delay on replies, the small
/// send buffer, and the write-progress timeout; its reads are kept in
/// `reads`. Socket options that cannot be set are left as they are; the
/// timeout still bounds the connection. `reads` may peek at the socket
/// while the connection holds it.
pub fn guard(stream: TcpStream, limits: &Limits, reads: Arc<Reads>) -> Guarded<Socket> {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(limits.send_buffer);
    let stream = Arc::new(Mutex::new(stream));
    // A Reads is made for one connection, so it is never set twice.
    let _ = reads.socket.set(Arc::downgrade(&stream));
    Guarded::new(Socket { stream, reads }, limits.write_timeout)
}

/// An IO stream whose writes fail with [`io::ErrorKind::TimedOut`] once they
/// have made no progress for `write_timeout`: from the first write (or
/// flush, or shutdown) that could not proceed, until some byte is written.
/// Reads pass through (hyper's header timeout covers them); a [`Socket`]
/// keeps what they find in its [`Reads`].
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    write_timeout: Duration,
    /// Armed while writes are stalled; allocated on the first stall and
    /// reused, so a connection that never stalls costs nothing.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Whether `stalled` is armed.
    armed: bool,
}

impl<T> Guarded<T> {
    /// Wrap `inner`.
    pub fn new(inner: T, write_timeout: Duration) -> Guarded<T> {
        Guarded {
            inner,
            write_timeout,
            stalled: None,
            armed: false,
        }
    }

    /// A write could not proceed: start the clock if it is not running, and
    /// fail if it has run out. The sleep is polled, so the task is woken at
    /// the deadline even if the socket never becomes writable.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = Instant::now() + self.write_timeout;
        let sleep = match &mut self.stalled {
            Some(sleep) => {
                if !self.armed {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .stalled
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data for the write timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Apply the progress rule to a write: bytes taken stop the clock.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.armed = false;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }

    /// Apply the progress rule to a flush or shutdown: one that cannot
    /// finish is a stall too, but finishing moves no byte, so it does not
    /// stop a clock that a write started.
    fn waited(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        match result {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        // hyper queues a reply's head and body without copying them into
        // one buffer when the stream takes vectored writes, as TCP does.
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.waited(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.waited(cx, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_times_out() {
        // A pipe with room for 64 bytes whose other end never reads.
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(ours, Duration::from_secs(10));
        guarded.write_all(&[b'x'; 64]).await.unwrap();
        let started = Instant::now();
        let e = guarded.write_all(b"more").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // Time is paused (it moves only when every task waits), so this
        // is the timer's arithmetic, not a race.
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(11));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_taking_data_is_not_cut() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guarded = Guarded::new(ours, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 32];
            let mut total = 0;
            // 32 bytes every 6 s: each stall is shorter than the timeout,
            // though the whole write takes far longer.
            while total < 1024 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                total += theirs.read(&mut buf).await.unwrap();
            }
            total
        });
        guarded.write_all(&[b'x'; 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_restarts_after_progress() {
        let (ours, mut theirs) = tokio::io::duplex(8);
        let mut guarded = Guarded::new(ours, Duration::from_secs(10));
        guarded.write_all(&[b'x'; 8]).await.unwrap();
        // Stalled for 9 s, then the peer reads: the write goes through.
        let write =
            tokio::spawn(async move { guarded.write_all(&[b'y'; 8]).await.map(|()| guarded) });
        tokio::time::sleep(Duration::from_secs(9)).await;
        let mut buf = [0u8; 8];
        theirs.read_exact(&mut buf).await.unwrap();
        let mut guarded = write.await.unwrap().unwrap();
        // A new stall gets the full timeout again, not the 1 s left.
        let started = Instant::now();
        let e = guarded.write_all(&[b'z'; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[test]
    fn limits_follow_the_header_timeout() {
        let limits = Limits::new(Duration::from_secs(3));
        assert_eq!(limits.write_timeout, Duration::from_secs(3));
        assert!(limits.max_buf_size >= 8192, "hyper's minimum");
        // hyper panics on a cap below its minimum; ours is above it.
        let _ = http1_builder(&limits);
    }
}
