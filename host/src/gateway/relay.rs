//! Moving bytes between a client and its tunnel: both ways at once, half-closes
//! passed on, idle time bounded, bytes counted for the upstream's metrics, and an
//! upstream that goes quiet on a client that spoke reported ([`Silence`]).
//!
//! Between two plain TCP sockets on Linux, [`splice`] moves the bytes inside the
//! kernel (socket → pipe → socket, as HAProxy's `option splice-auto` does); any
//! other pair (a TLS hop, bytes replayed first) goes through [`relay`]'s buffers.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Bytes moved by one relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Client → upstream.
    pub up: u64,
    /// Upstream → client.
    pub down: u64,
}

/// Watches for an upstream that sends nothing back for `after` once its client has
/// sent bytes, as a stopped proxy does (its kernel still takes the bytes). The
/// tunnel goes on; `report` is called once, the first time a wait runs that long.
pub(crate) struct Silence<'a> {
    /// How long an unanswered client waits before the upstream is reported.
    pub after: Duration,
    /// What to do then.
    pub report: &'a (dyn Fn() + Sync),
}

/// Relays until both sides have closed (an EOF on one side shuts the other's write
/// half down, so a half-close travels through), an error, or `idle` with no byte
/// either way.
pub(crate) async fn relay<A, B>(a: A, b: B, idle: Duration, silence: Option<Silence<'_>>) -> Moved
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut moved = Moved::default();
    let (mut up_open, mut down_open) = (true, true);
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut deadline = Instant::now() + idle;
    // Since when the client's bytes have gone unanswered; the watch ends once it fires.
    let mut asked: Option<Instant> = None;
    let mut watching = silence.is_some();
    let after = silence.as_ref().map_or(Duration::ZERO, |s| s.after);
    while up_open || down_open {
        let silent_at = asked.map_or(deadline, |a| a + after);
        tokio::select! {
            r = ar.read(&mut up_buf), if up_open => match r {
                Ok(0) | Err(_) => {
                    up_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => {
                    if bw.write_all(&up_buf[..n]).await.is_err() {
                        break;
                    }
                    moved.up += n as u64;
                    let now = Instant::now();
                    deadline = now + idle;
                    asked.get_or_insert(now);
                }
            },
            r = br.read(&mut down_buf), if down_open => match r {
                Ok(0) | Err(_) => {
                    down_open = false;
                    watching = false;
                    let _ = aw.shutdown().await;
                }
                Ok(n) => {
                    if aw.write_all(&down_buf[..n]).await.is_err() {
                        break;
                    }
                    moved.down += n as u64;
                    deadline = Instant::now() + idle;
                    asked = None;
                }
            },
            _ = tokio::time::sleep_until(silent_at), if watching && asked.is_some() => {
                watching = false;
                if let Some(s) = &silence {
                    (s.report)();
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(target: "proxypool::gateway", "tunnel idle for {idle:?}: closing");
                break;
            }
        }
    }
    moved
}

#[cfg(target_os = "linux")]
pub(crate) use self::splice::splice;

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use nix::fcntl::{OFlag, SpliceFFlags};
    use tokio::io::Interest;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::{Moved, Silence};
    use crate::sync::Locked as _;

    /// Bytes moved per splice: a pipe's default capacity.
    const CHUNK: usize = 64 * 1024;
    /// Empty pipes kept for the next transfer; more are closed.
    const POOL: usize = 256;

    /// Empty pipes, shared by every tunnel: a tunnel holds one only while bytes are
    /// in it, so idle tunnels cost no descriptors beyond their sockets.
    static PIPES: Mutex<Vec<(OwnedFd, OwnedFd)>> = Mutex::new(Vec::new());

    fn take_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        if let Some(p) = PIPES.locked().pop() {
            return Ok(p);
        }
        Ok(nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?)
    }

    fn give_pipe(p: (OwnedFd, OwnedFd)) {
        let mut pool = PIPES.locked();
        if pool.len() < POOL {
            pool.push(p);
        }
    }

    /// [`Asked`] when nothing is waiting for an answer.
    const ANSWERED: u64 = 0;
    /// [`Asked`] once the upstream has closed its side, or the watch has fired.
    const DONE: u64 = u64::MAX;

    /// Since when (ms after the start, plus one) the client's bytes have gone
    /// unanswered; or [`ANSWERED`], or [`DONE`]. `dozing` is set while the tunnel's
    /// clock sleeps long (quiet tunnels): only then does a question wake it.
    struct Asked {
        since: AtomicU64,
        dozing: std::sync::atomic::AtomicBool,
        spoke: tokio::sync::Notify,
    }

    impl Asked {
        fn new(watching: bool) -> Asked {
            Asked {
                since: AtomicU64::new(if watching { ANSWERED } else { DONE }),
                dozing: std::sync::atomic::AtomicBool::new(false),
                spoke: tokio::sync::Notify::new(),
            }
        }

        /// The client sent bytes at `now` (ms after the start).
        fn spoke(&self, now: u64) {
            if self
                .since
                .compare_exchange(ANSWERED, now + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
                && self.dozing.load(Ordering::Acquire)
            {
                self.spoke.notify_one();
            }
        }

        /// The upstream sent bytes.
        fn answered(&self) {
            let _ = self
                .since
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |s| {
                    (s != DONE).then_some(ANSWERED)
                });
        }

        /// Nothing more to watch: the upstream closed its side.
        fn done(&self) {
            self.since.store(DONE, Ordering::Release);
        }
    }

    /// A tunnel's one timer: it ends the tunnel after `idle` with no byte either way,
    /// and reports a question unanswered for `silence.after` (once). While bytes move
    /// it looks every half of `silence.after`, so a short tunnel never waits on it and
    /// a busy one needs no wake per request; a quiet one sleeps to its idle deadline
    /// and is woken by its next question.
    async fn clock(
        start: Instant,
        idle: Duration,
        silence: Option<&Silence<'_>>,
        asked: &Asked,
        last: &AtomicU64,
    ) {
        let now_ms = || start.elapsed().as_millis() as u64;
        let (idle_ms, after_ms) = (
            idle.as_millis() as u64,
            silence.map_or(0, |s| s.after.as_millis() as u64),
        );
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let now = now_ms();
            let quiet = now.saturating_sub(last.load(Ordering::Relaxed));
            if quiet >= idle_ms {
                return;
            }
            let mut next = now + (idle_ms - quiet);
            let since = asked.since.load(Ordering::Acquire);
            if let Some(silence) = silence
                && since != DONE
            {
                if since != ANSWERED && now.saturating_sub(since - 1) >= after_ms {
                    asked.done();
                    (silence.report)();
                } else if since != ANSWERED || quiet < after_ms {
                    next = next.min(now + (after_ms / 2).max(1));
                }
            }
            asked.dozing.store(next > now + after_ms, Ordering::Release);
            sleep.as_mut().reset(start + Duration::from_millis(next));
            tokio::select! {
                _ = &mut sleep => {}
                _ = asked.spoke.notified() => {}
            }
        }
    }

    /// As [`super::relay`], between two plain TCP sockets, with splice(2).
    pub(crate) async fn splice(
        a: TcpStream,
        b: TcpStream,
        idle: Duration,
        silence: Option<Silence<'_>>,
    ) -> Moved {
        let start = Instant::now();
        let now_ms = || start.elapsed().as_millis() as u64;
        let last = AtomicU64::new(0);
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let asked = Asked::new(silence.is_some());
        let touch_up = || {
            let now = now_ms();
            last.store(now, Ordering::Relaxed);
            asked.spoke(now);
        };
        let touch_down = || {
            last.store(now_ms(), Ordering::Relaxed);
            asked.answered();
        };
        let pumps = async {
            // The first failure ends both ways, as in `relay`.
            let both = tokio::try_join!(pump(&a, &b, &up, &touch_up), async {
                let r = pump(&b, &a, &down, &touch_down).await;
                asked.done();
                r
            });
            if let Err(e) = both {
                tracing::debug!(target: "proxypool::gateway", "tunnel ended: {e}");
            }
        };
        tokio::select! {
            _ = pumps => {}
            _ = clock(start, idle, silence.as_ref(), &asked, &last) => {
                tracing::debug!(target: "proxypool::gateway", "tunnel idle for {idle:?}: closing");
            }
        }
        Moved {
            up: up.load(Ordering::Relaxed),
            down: down.load(Ordering::Relaxed),
        }
    }

    /// `src` → `dst` until `src` ends (then `dst`'s write half is shut down, so a
    /// half-close travels) or either fails.
    async fn pump(
        src: &TcpStream,
        dst: &TcpStream,
        moved: &AtomicU64,
        touch: &impl Fn(),
    ) -> io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            src.readable().await?;
            let (pipe_r, pipe_w) = take_pipe()?;
            let n = match src.try_io(Interest::READABLE, || {
                Ok(nix::fcntl::splice(src, None, &pipe_w, None, CHUNK, flags)?)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    give_pipe((pipe_r, pipe_w));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                give_pipe((pipe_r, pipe_w));
                let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            let mut left = n;
            while left > 0 {
                dst.writable().await?;
                match dst.try_io(Interest::WRITABLE, || {
                    Ok(nix::fcntl::splice(&pipe_r, None, dst, None, left, flags)?)
                }) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The pipe still holds bytes: it is closed, not pooled.
                    Err(e) => return Err(e),
                }
            }
            give_pipe((pipe_r, pipe_w));
            moved.fetch_add(n as u64, Ordering::Relaxed);
            touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_are_counted_half_closes_pass_and_idle_tunnels_close() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(relay(client, upstream, Duration::from_secs(60), None));
        client_peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        // The client half-closes: the upstream sees EOF and can still answer.
        client_peer.shutdown().await.unwrap();
        assert_eq!(upstream_peer.read(&mut got).await.unwrap(), 0);
        upstream_peer.write_all(b"pong!").await.unwrap();
        let mut answer = [0u8; 5];
        client_peer.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"pong!");
        // Then nothing for the idle time: the relay ends.
        tokio::time::advance(Duration::from_secs(61)).await;
        let moved = task.await.unwrap();
        assert_eq!(moved, Moved { up: 4, down: 5 });
    }

    /// A relay whose reports are counted, over two duplex pipes.
    fn watched(
        after: Duration,
    ) -> (
        tokio::io::DuplexStream,
        tokio::io::DuplexStream,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        tokio::task::JoinHandle<Moved>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (client, client_peer) = tokio::io::duplex(1024);
        let (upstream, upstream_peer) = tokio::io::duplex(1024);
        let reports = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = reports.clone();
        let task = tokio::spawn(async move {
            let report = move || {
                counted.fetch_add(1, Ordering::SeqCst);
            };
            let silence = Silence {
                after,
                report: &report,
            };
            relay(client, upstream, Duration::from_secs(600), Some(silence)).await
        });
        (client_peer, upstream_peer, reports, task)
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_silent_after_its_client_spoke_is_reported_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let (mut client, mut upstream, reports, _task) = watched(Duration::from_secs(5));
        let mut got = [0u8; 4];
        // Nothing sent yet: silence is no sign.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(reports.load(SeqCst), 0);
        client.write_all(b"ping").await.unwrap();
        upstream.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(reports.load(SeqCst), 0, "within the bound");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(reports.load(SeqCst), 1, "past it");
        // The tunnel goes on, and one tunnel reports once.
        upstream.write_all(b"pong").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        upstream.read_exact(&mut got).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(reports.load(SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_answers_or_closes_is_not_reported() {
        use std::sync::atomic::Ordering::SeqCst;
        let (mut client, mut upstream, reports, task) = watched(Duration::from_secs(5));
        let mut got = [0u8; 4];
        // Each answer within the bound, though the whole exchange outlasts it.
        for _ in 0..10 {
            client.write_all(b"ping").await.unwrap();
            upstream.read_exact(&mut got).await.unwrap();
            tokio::time::sleep(Duration::from_secs(4)).await;
            upstream.write_all(b"pong").await.unwrap();
            client.read_exact(&mut got).await.unwrap();
        }
        // A question the upstream closes on rather than answers.
        client.write_all(b"ping").await.unwrap();
        upstream.read_exact(&mut got).await.unwrap();
        upstream.shutdown().await.unwrap();
        assert_eq!(client.read(&mut got).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(reports.load(SeqCst), 0);
        drop((client, upstream));
        assert_eq!(task.await.unwrap().up, 44);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_reports_an_upstream_silent_after_its_client_spoke_once() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use tokio::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client_peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let client = l.accept().await.unwrap().0;
        let upstream = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let mut upstream_peer = l.accept().await.unwrap().0;
        let reports = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = reports.clone();
        let _task = tokio::spawn(async move {
            let report = move || {
                counted.fetch_add(1, SeqCst);
            };
            let silence = Silence {
                after: Duration::from_millis(100),
                report: &report,
            };
            splice(client, upstream, Duration::from_secs(600), Some(silence)).await
        });
        let mut got = [0u8; 4];
        for _ in 0..2 {
            client_peer.write_all(b"ping").await.unwrap();
            upstream_peer.read_exact(&mut got).await.unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while reports.load(SeqCst) == 0 {
                assert!(std::time::Instant::now() < deadline, "never reported");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The tunnel still carries bytes.
            upstream_peer.write_all(b"pong").await.unwrap();
            client_peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"pong");
        }
        assert_eq!(reports.load(SeqCst), 1, "once per tunnel");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn splice_moves_bytes_passes_half_closes_and_ends_when_idle() {
        use tokio::net::{TcpListener, TcpStream};
        async fn pair() -> (TcpStream, TcpStream) {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            (c, l.accept().await.unwrap().0)
        }
        let (mut client_peer, client) = pair().await;
        let (upstream, mut upstream_peer) = pair().await;
        let task = tokio::spawn(splice(client, upstream, Duration::from_millis(300), None));
        // More than a pipe holds, so that a transfer takes several splices.
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client_peer.write_all(&sent).await.unwrap();
            client_peer.shutdown().await.unwrap();
            client_peer
        });
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        assert!(
            got == big,
            "the upstream got every byte, then the half-close"
        );
        let mut client_peer = writer.await.unwrap();
        upstream_peer.write_all(b"pong!").await.unwrap();
        let mut answer = [0u8; 5];
        client_peer.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"pong!");
        // Nothing more either way: the idle bound ends it.
        let moved = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the idle bound ends the relay")
            .unwrap();
        assert_eq!(
            moved,
            Moved {
                up: big.len() as u64,
                down: 5
            }
        );
    }
}
