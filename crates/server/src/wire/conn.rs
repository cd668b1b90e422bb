//! The connection every handler takes: one type over every transport, chosen at accept time.
//!
//! Plain TCP (`http://`) or TLS (`https://`, rustls), so sources, listeners, the admin API
//! and the pages serve both without knowing which they have.
//!
//! **One promise for every write, whatever the transport:** a write that returns `n` has
//! handed `n` bytes to the kernel. Over TLS the bytes are encrypted into records that rustls
//! holds until the socket takes them; the write reports them only once it has, and a write
//! that cannot finish reports nothing yet (`Pending`, or `WouldBlock` for the non-blocking
//! calls). The caller then offers the same bytes again, as every caller does when a socket
//! is full (the listener's queue, `write_all`), and the records are sent before anything new
//! is encrypted. So nothing is ever left behind in a buffer without a task to send it: a
//! parked listener, a response before a keep-alive read, a source's `200`.
//!
//! **Cost:** an enum over the transports, matched on every poll (a predictable branch). The
//! TLS state is boxed: a plain connection stays the size of its socket plus one word (a test
//! checks it). A TLS connection has no `sendfile` (the kernel cannot encrypt here: no kernel
//! TLS on the machines Agora runs on, see `wire::tls`).

use std::io::{IoSlice, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::stream::fanout::Fanout;

/// A client's connection.
#[derive(Debug)]
pub(crate) enum Connection {
    /// Plain TCP (`http://`).
    Plain(TcpStream),
    /// TLS over TCP (`https://`), after the handshake.
    Tls(Box<Tls>),
}

/// A TLS connection and the plaintext bytes it took but has not reported yet (their records
/// wait for room in the socket).
#[derive(Debug)]
pub(crate) struct Tls {
    stream: TlsStream<TcpStream>,
    unreported: usize,
}

impl From<TcpStream> for Connection {
    fn from(s: TcpStream) -> Self {
        Connection::Plain(s)
    }
}

/// Encrypted bytes a TLS connection may hold for the socket: one full record and change. A
/// write encrypts at most this much before the records go out, so a stalled TLS listener
/// holds this, not its whole queue, in user space.
const TLS_BUFFER: usize = 32 * 1024;

impl From<TlsStream<TcpStream>> for Connection {
    fn from(mut stream: TlsStream<TcpStream>) -> Self {
        stream.get_mut().1.set_buffer_limit(Some(TLS_BUFFER));
        Connection::Tls(Box::new(Tls {
            stream,
            unreported: 0,
        }))
    }
}

/// Plaintext goes to rustls in pieces of at most this many bytes. rustls copies each piece
/// into its record with one `memcpy`, and glibc copies 8 KiB or more with `rep movsb`, which
/// is several times slower when the source and the destination are not equally aligned: they
/// never are here, a record's payload starts 5 bytes into its buffer. Smaller pieces take
/// glibc's vector loop instead (see BENCHMARKS.md, HTTPS: the copy was 18% of the server's
/// CPU with whole chunks).
const PIECE: usize = 2048;

/// Pieces per write: more than [`TLS_BUFFER`] takes at once.
const PIECES: usize = 2 * TLS_BUFFER / PIECE;

/// `bufs` cut into pieces of at most [`PIECE`] bytes, as many as fit in `out`.
fn in_pieces<'a>(bufs: &'a [IoSlice<'_>], out: &'a mut [IoSlice<'a>; PIECES]) -> &'a [IoSlice<'a>] {
    let mut k = 0;
    for piece in bufs.iter().flat_map(|b| b.chunks(PIECE)) {
        if k == out.len() {
            break;
        }
        out[k] = IoSlice::new(piece);
        k += 1;
    }
    &out[..k]
}

/// The socket as rustls's output: `send(2)`/`sendmsg(2)` without SIGPIPE.
struct SocketOut<'a>(&'a TcpStream);

impl Write for SocketOut<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        socket2::SockRef::from(self.0).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One `send` or `sendmsg` of `bufs` on a non-blocking socket.
fn send_now(s: &TcpStream, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
    s.try_io(tokio::io::Interest::WRITABLE, || match bufs {
        // A closed peer is an error (EPIPE), never a SIGPIPE.
        [one] => socket2::SockRef::from(s).send_with_flags(one, libc::MSG_NOSIGNAL),
        _ => socket2::SockRef::from(s).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
    })
}

impl Tls {
    /// Send the records rustls holds: `WouldBlock` while some are left.
    fn send_records(&mut self) -> std::io::Result<()> {
        let (tcp, session) = self.stream.get_mut();
        while session.wants_write() {
            let tcp = &*tcp;
            match tcp.try_io(tokio::io::Interest::WRITABLE, || {
                session.write_tls(&mut SocketOut(tcp))
            }) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The promise of the module: `bufs` encrypted (as far as the buffer allows) and reported
    /// once their records are in the socket; `WouldBlock` until then.
    fn try_send(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        loop {
            self.send_records()?;
            if self.unreported > 0 {
                return Ok(std::mem::take(&mut self.unreported));
            }
            let n = self
                .stream
                .get_mut()
                .1
                .writer()
                .write_vectored(in_pieces(bufs, &mut [IoSlice::new(&[]); PIECES]))?;
            if n == 0 {
                // Nothing to send, or no room (cannot be: the records all went out above).
                return Ok(0);
            }
            self.unreported = n;
        }
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            match self.try_send(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The failed try cleared the socket's readiness: this registers the task.
                    std::task::ready!(self.stream.get_ref().0.poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_records(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            match self.send_records() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::task::ready!(self.stream.get_ref().0.poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }
}

impl Connection {
    /// Write `bufs` as one vectored write, with the socket's own calls: `send(2)` for one
    /// buffer, `sendmsg(2)` for several. `writev(2)` (what [`AsyncWrite::poll_write_vectored`]
    /// does on a `TcpStream`) goes through the file layer first (position lock, permission
    /// and notification hooks), a cost paid once per listener per write on the fan-out's
    /// hot path. Over TLS, see the module's promise.
    pub(crate) fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self {
            Connection::Plain(s) => loop {
                std::task::ready!(s.poll_write_ready(cx))?;
                match send_now(s, bufs) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
            Connection::Tls(t) => t.poll_send(cx, bufs),
        }
    }

    /// Whether the kernel can send the stream's bytes straight from a mount's file
    /// ([`Connection::try_send_file`]): plain TCP only.
    pub(crate) fn can_send_file(&self) -> bool {
        matches!(self, Connection::Plain(_))
    }

    /// Whether this is an HTTPS connection.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Connection::Tls(_))
    }

    /// `sendfile` of a mount's stream range (see [`Fanout::send_file`]) without waiting;
    /// `Unsupported` over TLS (see [`Connection::can_send_file`]).
    pub(crate) fn try_send_file(
        &self,
        fanout: &Fanout,
        offset: u64,
        len: usize,
    ) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => s.try_io(tokio::io::Interest::WRITABLE, || {
                fanout.send_file(s, offset, len)
            }),
            Connection::Tls(_) => Err(std::io::ErrorKind::Unsupported.into()),
        }
    }

    /// [`Connection::poll_send_vectored`] without waiting: `WouldBlock` when the socket is
    /// full (or known not to be writable yet).
    pub(crate) fn try_send_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => send_now(s, bufs),
            Connection::Tls(t) => t.try_send(bufs),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(t) => Pin::new(&mut t.stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Tls(t) => t.poll_send(cx, &[IoSlice::new(buf)]),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Connection::Tls(t) => t.poll_send(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(s) => s.is_write_vectored(),
            Connection::Tls(_) => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            // Records a read left (an alert, a key update's answer).
            Connection::Tls(t) => t.poll_records(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            // close_notify, the records, then the TCP write side.
            Connection::Tls(t) => Pin::new(&mut t.stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_plain_connection_costs_at_most_a_word_over_its_socket() {
        assert!(
            std::mem::size_of::<Connection>() <= std::mem::size_of::<TcpStream>() + 8,
            "{} bytes",
            std::mem::size_of::<Connection>()
        );
    }

    /// Bytes both ways over a real socket, the vectored write included.
    #[tokio::test]
    async fn carries_bytes_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(b"ping").await.expect("write");
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.expect("read");
            back
        });
        let (s, _) = listener.accept().await.expect("accept");
        let mut conn = Connection::from(s);
        let mut got = [0u8; 4];
        conn.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        let parts = [IoSlice::new(b"po"), IoSlice::new(b"ng")];
        let n = conn.write_vectored(&parts).await.expect("vectored write");
        conn.write_all(&b"pong"[n..]).await.expect("write the rest");
        conn.shutdown().await.expect("shutdown");
        assert_eq!(client.await.expect("client"), b"pong");
    }

    /// A CA and a certificate for `localhost` it signed, made with openssl in `dir`:
    /// (CA, chain, key).
    fn test_pki(
        dir: &std::path::Path,
    ) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\n").expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "1",
            "-days",
            "1",
            "-extfile",
            "ext",
            "-out",
            "leaf.pem",
        ]);
        (
            dir.join("ca.pem"),
            dir.join("leaf.pem"),
            dir.join("leaf.key"),
        )
    }

    /// The promise of the module over TLS: whatever mix of non-blocking and waiting writes,
    /// the bytes reported written are exactly the bytes the peer reads, once each, in order,
    /// even when the socket fills up between encrypting and sending.
    #[tokio::test]
    async fn tls_writes_report_exactly_what_reaches_the_peer() {
        // A write that loses track of what it took loops or waits for good: a failure too.
        tokio::time::timeout(std::time::Duration::from_secs(60), tls_writes())
            .await
            .expect("the writes ended in time");
    }

    async fn tls_writes() {
        use rustls_pki_types::pem::PemObject;
        let dir = std::env::temp_dir().join(format!("agora-conn-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (ca, chain, key) = test_pki(&dir);
        let server_config = crate::tls::server_config(&chain, &key).expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(&ca).expect("ca") {
            roots.add(c.expect("cert")).expect("root");
        }
        let client_config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            // A small receive window, so the server's socket fills up early.
            socket2::SockRef::from(&tcp)
                .set_recv_buffer_size(8192)
                .expect("rcvbuf");
            let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config))
                .connect(name, tcp)
                .await
                .expect("handshake");
            // Not reading until the server has been blocked a few times.
            go_rx.await.expect("go");
            let mut got = Vec::new();
            let _ = tls.read_to_end(&mut got).await;
            got
        });
        let (tcp, _) = listener.accept().await.expect("accept");
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(8192)
            .expect("sndbuf");
        let tls = tokio_rustls::TlsAcceptor::from(server_config)
            .accept(tcp)
            .await
            .expect("handshake");
        let mut conn = Connection::from(tls);
        let mut go = Some(go_tx);
        let (mut at, mut blocked, mut turn) = (0usize, 0u32, 0u32);
        while at < data.len() {
            turn += 1;
            // Three slices of uneven sizes, as a listener's queue offers them.
            let end = data.len().min(at + 70_000);
            let (a, rest) = data[at..end].split_at((end - at) / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            let bufs = [IoSlice::new(a), IoSlice::new(b), IoSlice::new(c)];
            let n = if turn % 2 == 0 {
                match conn.try_send_vectored(&bufs) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        blocked += 1;
                        if blocked == 3 {
                            let _ = go.take().map(|g| g.send(()));
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                }
            } else {
                if blocked >= 3 {
                    std::future::poll_fn(|cx| conn.poll_send_vectored(cx, &bufs))
                        .await
                        .expect("send")
                } else {
                    // A waiting write would never end before the reader starts: only try.
                    continue;
                }
            };
            assert!(n > 0);
            at += n;
        }
        let _ = go.take().map(|g| g.send(()));
        conn.shutdown().await.expect("shutdown");
        assert!(blocked >= 3, "the socket never filled up");
        let got = client.await.expect("client");
        assert!(got == data, "{} bytes read, {} sent", got.len(), data.len());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
