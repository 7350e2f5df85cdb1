//! Connection slots: at most `--max-connections` clients are served at
//! once, and no client can keep a slot from a new one for long.
//!
//! The header, body and write timeouts ([`crate::conn`]) end a connection
//! that stops making progress, but a keep-alive client that asks for
//! `/health` every few seconds makes progress for ever: 1,024 of them held
//! every slot, and a genuine hook on a new connection never got in. So slots
//! are recycled:
//!
//! - when every slot is taken and a new client has been accepted, the
//!   connection idle longest (its last reply sent, or accepted at least
//!   [`FIRST_REQUEST`] ago, and its client silent since: everything it
//!   sent read, no byte of a next request received, none waiting unread in
//!   its socket) is asked to close, and its slot goes to the new client.
//!   hyper's graceful shutdown closes an idle connection at once; one that a
//!   request reached meanwhile gets its reply first. A connection in the
//!   middle of a request is never chosen: with none idle, the new client
//!   waits for a slot to free, which the timeouts bound;
//! - every connection closes after [`Limits::max_connection_age`], and
//!   after [`Limits::max_connection_requests`] requests, once the reply in
//!   progress is sent (that reply says `Connection: close`).
//!
//! A slot is held until its connection has closed *and* every hook it
//! started has been recorded: a hook whose client hangs up goes on in a task
//! of its own holding a clone of the [`Slot`] (see [`crate::routes`]), so
//! hooks that outlive their connections count against the cap too.
//!
//! All of it is one small book under a std Mutex, never held across an
//! `.await`.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::conn::Reads;

/// How often a new client waiting for a slot looks again for a connection
/// whose client has fallen silent.
const RECHECK: Duration = Duration::from_millis(100);

/// How long a new connection has to send its first request before it may
/// be closed for another client: its request may still be on its way when
/// its socket is first read (under load, for a while). A client that
/// connects and sends nothing holds its slot this long, not the header
/// timeout.
pub const FIRST_REQUEST: Duration = Duration::from_secs(1);

/// How many connections, for how long, for how many requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most slots held at once.
    pub max_connections: usize,
    /// A connection closes this long after it was accepted, once the reply
    /// in progress (if any) is sent.
    pub max_connection_age: Duration,
    /// A connection closes after the reply to its request number this.
    pub max_connection_requests: u64,
}

/// The slots of one server; clones share them.
#[derive(Clone)]
pub struct Slots(Arc<Shared>);

struct Shared {
    limits: Limits,
    book: Mutex<Book>,
    /// Rung when a slot is freed, or when a connection turns idle or stops
    /// being about to close: what a new client waiting for a slot waits on.
    changed: Notify,
}

#[derive(Default)]
struct Book {
    /// Ids of the slots held (by open connections, and by hooks that
    /// outlived theirs), oldest first.
    held: BTreeSet<u64>,
    next_id: u64,
    /// Open connections, by id.
    open: HashMap<u64, Open>,
    /// Idle open connections not asked to close, by when they turned idle
    /// (a sequence number): the one idle longest first.
    idle: BTreeSet<(u64, u64)>,
    next_idle: u64,
    /// Open connections asked to close that have no request in progress:
    /// each is about to free its slot.
    closing_idle: usize,
}

struct Open {
    conn: Arc<Conn>,
    /// Requests whose reply is not made yet.
    in_flight: usize,
    /// While idle: its place in `idle`, and its read count when it turned
    /// idle (a read since means a request is arriving).
    idle: Option<(u64, u64)>,
}

/// What a connection's task, its requests and its socket share.
struct Conn {
    id: u64,
    /// Set (under the book's lock) once the connection is to close after
    /// the reply in progress.
    closing: AtomicBool,
    /// Wakes the connection's task to close it.
    close: Notify,
    /// What its socket's reads tell ([`crate::conn::Socket`] keeps it).
    reads: Arc<Reads>,
    /// Requests started.
    requests: AtomicU64,
    /// When it was accepted.
    opened: Instant,
}

/// One slot, held until the last clone is dropped.
#[derive(Clone)]
pub struct Slot(Arc<Lease>);

/// What holds a slot: its connection's place in the book, given up when
/// the last clone of the [`Slot`] is dropped.
struct Lease {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
}

impl Slots {
    /// A mark for [`Slots::released_before`]: every slot.
    pub const ALL: u64 = u64::MAX;

    /// Slots under `limits`.
    pub fn new(limits: Limits) -> Slots {
        Slots(Arc::new(Shared {
            limits: Limits {
                max_connections: limits.max_connections.max(1),
                max_connection_requests: limits.max_connection_requests.max(1),
                ..limits
            },
            book: Mutex::default(),
            changed: Notify::new(),
        }))
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.0.limits
    }

    /// A slot for a client just accepted: at once if one is free; else
    /// once the connection idle longest, asked to close now, has let go of
    /// its own, or another frees.
    pub async fn take(&self) -> Slot {
        loop {
            let changed = self.0.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(slot) = self.try_take() {
                return slot;
            }
            // What a connection's socket reads (a client falling silent)
            // rings nothing: look again now and then.
            let _ = tokio::time::timeout(RECHECK, changed).await;
        }
    }

    fn try_take(&self) -> Option<Slot> {
        let mut book = self.0.lock();
        if book.held.len() < self.0.limits.max_connections {
            return Some(self.register(&mut book));
        }
        // One asked at a time: one that is about to close frees a slot
        // without another being closed.
        if book.closing_idle == 0 {
            if let Some(id) = book.idle_longest() {
                book.close(id);
            }
        }
        None
    }

    fn register(&self, book: &mut Book) -> Slot {
        let id = book.next_id;
        book.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            closing: AtomicBool::new(false),
            close: Notify::new(),
            reads: Arc::default(),
            requests: AtomicU64::new(0),
            opened: Instant::now(),
        });
        book.held.insert(id);
        book.open.insert(
            id,
            Open {
                conn: conn.clone(),
                in_flight: 0,
                idle: None,
            },
        );
        // Idle until its first request: a client that connects and sends
        // nothing goes first, once it has had FIRST_REQUEST to send one.
        book.turn_idle(id);
        Slot(Arc::new(Lease {
            shared: self.0.clone(),
            conn,
        }))
    }

    /// Ask every open connection to close after the reply in progress (at
    /// once if idle), as at shutdown. Returns a mark for
    /// [`Slots::released_before`].
    pub fn close_all(&self) -> u64 {
        let mut book = self.0.lock();
        let ids: Vec<u64> = book.open.keys().copied().collect();
        for id in ids {
            book.close(id);
        }
        book.next_id
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.0.lock().held.len()
    }

    /// Once every slot taken before `mark` (from [`Slots::close_all`], or
    /// [`Slots::ALL`]) is free.
    pub async fn released_before(&self, mark: u64) {
        loop {
            let changed = self.0.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let book = self.0.lock();
                let oldest = book.held.first().copied();
                if oldest.is_none_or(|id| id >= mark) {
                    return;
                }
            }
            changed.await;
        }
    }
}

impl Shared {
    /// The book; a thread that panicked holding it left it consistent
    /// (every change is made before anything that can panic).
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Book {
    /// The connection idle longest whose client is silent: everything it
    /// sent has been read (a request sent just before is not lost), no
    /// byte of a next request has come since its last reply, and, if it
    /// has not sent a request yet, it has had [`FIRST_REQUEST`] to.
    ///
    /// Its socket is peeked at too ([`Reads::silent_since`]): a next
    /// request may have reached it after the last read found nothing, and
    /// wait there unread until the connection's task runs (under load,
    /// tens of milliseconds), or be being read just now. Closing that
    /// connection would lose the request; it is about to be busy, so the
    /// next one is taken instead. (With TLS, the peek sees the request's
    /// records: unread bytes all the same.)
    fn idle_longest(&self) -> Option<u64> {
        let now = Instant::now();
        self.idle.iter().map(|&(_, id)| id).find(|id| {
            let open = &self.open[id];
            let conn = &open.conn;
            (conn.requests.load(Relaxed) > 0 || now - conn.opened >= FIRST_REQUEST)
                && open
                    .idle
                    .is_some_and(|(_, then)| conn.reads.silent_since(then))
        })
    }

    fn turn_idle(&mut self, id: u64) {
        let seq = self.next_idle;
        self.next_idle += 1;
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        if open.conn.closing.load(Relaxed) {
            self.closing_idle += 1;
        } else {
            open.idle = Some((seq, open.conn.reads.count()));
            self.idle.insert((seq, id));
        }
    }

    /// Take `id` out of the idle set (it is busy, closing or gone).
    fn not_idle(&mut self, id: u64) {
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        if let Some((seq, _)) = open.idle.take() {
            self.idle.remove(&(seq, id));
        }
    }

    /// Ask `id` to close after the reply in progress, at once if idle.
    fn close(&mut self, id: u64) {
        self.not_idle(id);
        let Some(open) = self.open.get(&id) else {
            return;
        };
        if open.conn.closing.swap(true, Relaxed) {
            return;
        }
        if open.in_flight == 0 {
            self.closing_idle += 1;
        }
        open.conn.close.notify_one();
    }

    fn request_started(&mut self, id: u64) {
        self.not_idle(id);
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        open.in_flight += 1;
        if open.in_flight == 1 && open.conn.closing.load(Relaxed) {
            // It will not close at once after all.
            self.closing_idle -= 1;
        }
    }

    fn request_ended(&mut self, id: u64) {
        let Some(open) = self.open.get_mut(&id) else {
            return;
        };
        open.in_flight -= 1;
        if open.in_flight == 0 {
            self.turn_idle(id);
        }
    }

    fn connection_closed(&mut self, id: u64) {
        self.not_idle(id);
        if let Some(open) = self.open.remove(&id) {
            if open.in_flight == 0 && open.conn.closing.load(Relaxed) {
                self.closing_idle -= 1;
            }
        }
    }
}

impl Slot {
    /// Where the connection's socket keeps what its reads tell: a
    /// connection is closed for a new client only once everything its
    /// client sent has been read, and nothing since its last reply.
    pub fn reads(&self) -> Arc<Reads> {
        self.0.conn.reads.clone()
    }

    /// Whether the connection is to close after the reply in progress.
    pub fn closing(&self) -> bool {
        self.0.conn.closing.load(Relaxed)
    }

    /// Once the connection has been asked to close (for a new client, or
    /// by [`Slots::close_all`]).
    pub async fn close_requested(&self) {
        self.0.conn.close.notified().await
    }

    /// Close after the reply in progress (the connection is old enough).
    pub fn close(&self) {
        self.0.shared.lock().close(self.0.conn.id);
    }

    /// A request has arrived: the connection is busy until the returned
    /// guard is dropped (its reply made). The request that reaches
    /// [`Limits::max_connection_requests`] makes it close after its reply.
    pub fn request(&self) -> Busy {
        let started = self.0.conn.requests.fetch_add(1, Relaxed) + 1;
        let shared = &self.0.shared;
        let mut book = shared.lock();
        book.request_started(self.0.conn.id);
        if started >= shared.limits.max_connection_requests {
            book.close(self.0.conn.id);
        }
        drop(book);
        // A connection asked to close for a new client may have raced into
        // this request: the client waiting may now ask another.
        shared.changed.notify_waiters();
        Busy(self.clone())
    }

    /// The connection is open until the returned guard is dropped: hold it
    /// for as long as the connection is served. The slot itself is free
    /// once every clone of it is gone too.
    pub fn open(&self) -> Opened {
        Opened(self.clone())
    }
}

/// A request in progress on a connection; see [`Slot::request`].
pub struct Busy(Slot);

impl Busy {
    /// Whether the reply must say `Connection: close`.
    pub fn closing(&self) -> bool {
        self.0.closing()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let shared = &self.0 .0.shared;
        shared.lock().request_ended(self.0 .0.conn.id);
        shared.changed.notify_waiters();
    }
}

/// A connection being served; see [`Slot::open`].
pub struct Opened(Slot);

impl Drop for Opened {
    fn drop(&mut self) {
        let shared = &self.0 .0.shared;
        shared.lock().connection_closed(self.0 .0.conn.id);
        shared.changed.notify_waiters();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut book = self.shared.lock();
        book.connection_closed(self.conn.id);
        book.held.remove(&self.conn.id);
        drop(book);
        self.shared.changed.notify_waiters();
    }
}

/// A hyper service that counts the requests of `slot`'s connection, lends
/// each request a clone of the slot (an extension, for work that must
/// outlive the connection), and says `Connection: close` on a reply after
/// which the connection closes.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    slot: Slot,
}

impl<S> Tracked<S> {
    /// `inner`, for the connection holding `slot`.
    pub fn new(inner: S, slot: Slot) -> Tracked<S> {
        Tracked { inner, slot }
    }
}

impl<S, ReqBody, ResBody> hyper::service::Service<http::Request<ReqBody>> for Tracked<S>
where
    S: hyper::service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<ResBody>, S::Error>> + Send>>;

    fn call(&self, mut request: http::Request<ReqBody>) -> Self::Future {
        let busy = self.slot.request();
        request.extensions_mut().insert(self.slot.clone());
        let reply = self.inner.call(request);
        Box::pin(async move {
            let mut response = reply.await?;
            if busy.closing() {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max_connections: usize) -> Slots {
        Slots::new(Limits {
            max_connections,
            max_connection_age: Duration::from_secs(3600),
            max_connection_requests: 1000,
        })
    }

    /// A slot for a client that has sent a request, and then nothing (its
    /// socket is read, and found empty).
    fn take_now(slots: &Slots) -> Option<Slot> {
        let slot = slots.try_take()?;
        drop(slot.request());
        slot.reads().read(false);
        Some(slot)
    }

    /// Whether `slot`'s connection has been asked to close.
    async fn asked(slot: &Slot) -> bool {
        tokio::time::timeout(Duration::from_millis(10), slot.close_requested())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_the_cap_the_connection_idle_longest_is_asked_to_close() {
        let slots = slots(3);
        let [a, b, c] = [(); 3].map(|()| take_now(&slots).unwrap());
        let _open = [&a, &b, &c].map(|s| s.open());
        // Each serves a request; a's reply is made, then b's; c's request
        // goes on. So a has been idle longest.
        drop([a.request(), b.request()]);
        let on_c = c.request();
        assert!(take_now(&slots).is_none());
        assert!(asked(&a).await);
        assert!(a.closing());
        assert!(!asked(&b).await && !asked(&c).await);
        // While a is about to close, no other is asked.
        assert!(take_now(&slots).is_none());
        assert!(!asked(&b).await);
        // a lets go: its slot is the new client's.
        drop(_open);
        drop(a);
        let d = take_now(&slots).expect("a's slot");
        assert!(!b.closing() && !c.closing() && !d.closing());
        drop(on_c);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_progress_or_arriving_is_never_asked() {
        let slots = slots(2);
        let busy = take_now(&slots).unwrap();
        let arriving = take_now(&slots).unwrap();
        let _open = (busy.open(), arriving.open());
        let _request = busy.request();
        // Bytes of a request came in on the idle one, and then nothing.
        arriving.reads().read(true);
        arriving.reads().read(false);
        assert!(take_now(&slots).is_none());
        assert!(!asked(&busy).await && !asked(&arriving).await);
        // Once the request has its reply, that connection is idle, and
        // asked to close for the next new client.
        drop(_request);
        assert!(take_now(&slots).is_none());
        assert!(asked(&busy).await);
        assert!(!asked(&arriving).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_time_to_send_its_first_request() {
        let slots = slots(1);
        // Accepted; what its client sent may be in its socket, not read
        // yet: however long, it is not closed unread.
        let unread = slots.try_take().unwrap();
        let open = unread.open();
        tokio::time::advance(FIRST_REQUEST * 2).await;
        assert!(slots.try_take().is_none());
        assert!(!asked(&unread).await);
        drop((open, unread));

        // Read, and nothing was there: its request may be on its way, for
        // FIRST_REQUEST; then a newcomer waiting gets its slot.
        let silent = slots.try_take().unwrap();
        let _open = silent.open();
        silent.reads().read(false);
        let newcomer = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        tokio::time::sleep(FIRST_REQUEST / 2).await;
        assert!(!asked(&silent).await);
        tokio::time::sleep(FIRST_REQUEST / 2 + RECHECK).await;
        assert!(asked(&silent).await);
        drop((_open, silent));
        newcomer.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_whose_next_request_waits_unread_in_its_socket_is_not_asked() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let slots = slots(1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        // A request served, and the read after it found nothing.
        let slot = take_now(&slots).unwrap();
        let _open = slot.open();
        let limits = crate::conn::Limits::new(Duration::from_secs(10));
        // The next request reaches the socket; the connection's task has
        // not run since (it never does here), so nothing has read it.
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        socket.readable().await.unwrap();
        let mut conn = crate::conn::guard(socket, &limits, slot.reads());
        assert!(slot.reads().waiting());
        assert!(take_now(&slots).is_none());
        assert!(!asked(&slot).await, "its request would be lost");

        // Read and answered, and then silent: now it is asked.
        let mut buf = [0u8; 256];
        assert!(conn.read(&mut buf).await.unwrap() > 0);
        drop(slot.request());
        let silent = tokio::time::timeout(Duration::from_millis(10), conn.read(&mut buf)).await;
        assert!(silent.is_err() && slot.reads().waiting());
        assert!(take_now(&slots).is_none());
        assert!(asked(&slot).await);
    }

    #[tokio::test]
    async fn a_connection_whose_client_has_gone_is_asked() {
        let slots = slots(1);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let slot = take_now(&slots).unwrap();
        let _open = slot.open();
        // The end of the stream is unread, but it is no request.
        drop(client);
        socket.readable().await.unwrap();
        let _conn = crate::conn::guard(
            socket,
            &crate::conn::Limits::new(Duration::from_secs(10)),
            slot.reads(),
        );
        assert!(take_now(&slots).is_none());
        assert!(asked(&slot).await);
    }

    #[tokio::test]
    async fn a_connection_that_raced_into_a_request_finishes_it_and_another_is_asked() {
        let slots = slots(2);
        let [a, b] = [(); 2].map(|()| take_now(&slots).unwrap());
        let _open = (a.open(), b.open());
        assert!(take_now(&slots).is_none());
        assert!(asked(&a).await);
        // A request reached a as it was asked: it gets its reply (closing),
        // and b, idle, is asked in its place.
        let on_a = a.request();
        assert!(on_a.closing());
        assert!(take_now(&slots).is_none());
        assert!(asked(&b).await);
        drop(on_a);
    }

    #[tokio::test]
    async fn a_hook_that_outlives_its_connection_keeps_the_slot() {
        let slots = slots(1);
        let slot = take_now(&slots).unwrap();
        let open = slot.open();
        let request = slot.request();
        let hook = slot.clone();
        // The client hangs up: the request and the connection end.
        drop((request, open, slot));
        assert!(take_now(&slots).is_none(), "the hook still holds it");
        assert_eq!(slots.held(), 1);
        drop(hook);
        assert!(take_now(&slots).is_some());
    }

    #[tokio::test]
    async fn the_last_request_closes_the_connection_after_its_reply() {
        let slots = Slots::new(Limits {
            max_connections: 4,
            max_connection_age: Duration::from_secs(3600),
            max_connection_requests: 2,
        });
        let slot = slots.try_take().unwrap();
        let _open = slot.open();
        assert!(!slot.request().closing());
        let second = slot.request();
        assert!(second.closing());
        assert!(
            asked(&slot).await,
            "the task is told, to close at once if idle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_client_gets_the_slot_once_it_is_freed() {
        let slots = slots(1);
        let slot = take_now(&slots).unwrap();
        let open = slot.open();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take().await }
        });
        // The idle one is asked to close; it does, and the newcomer gets
        // the slot.
        slot.close_requested().await;
        drop((open, slot));
        let got = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the slot")
            .unwrap();
        assert_eq!(slots.held(), 1);
        drop(got);
        assert_eq!(slots.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn close_all_asks_every_connection_and_waits_for_their_slots() {
        let slots = slots(4);
        let [a, b] = [(); 2].map(|()| take_now(&slots).unwrap());
        let opened = (a.open(), b.open());
        let _request = b.request();
        let mark = slots.close_all();
        assert!(asked(&a).await && asked(&b).await);
        assert!(a.closing() && b.closing());
        let late = take_now(&slots).unwrap();
        let released = tokio::spawn({
            let slots = slots.clone();
            async move { slots.released_before(mark).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!released.is_finished());
        drop((opened, _request, a, b));
        tokio::time::timeout(Duration::from_secs(1), released)
            .await
            .expect("released")
            .unwrap();
        // The slot taken after the mark is not waited for.
        assert_eq!(slots.held(), 1);
        drop(late);
    }
}
