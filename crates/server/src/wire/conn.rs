//! The connection every handler takes: one type over every transport, chosen at accept time.
//!
//! Today plain TCP; HTTPS (a later issue) adds a TLS variant here and nowhere else, so sources,
//! listeners, the admin API and the pages serve both without knowing which they have.
//!
//! **Cost:** an enum over the transports, matched on every poll (a predictable branch). With
//! one variant it is exactly a `TcpStream` (`size_of` is checked by a test below); a boxed TLS
//! variant will add at most a word to a listener's state.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::stream::fanout::Fanout;

/// A client's connection.
#[derive(Debug)]
pub(crate) enum Connection {
    /// Plain TCP (`http://`).
    Plain(TcpStream),
}

impl From<TcpStream> for Connection {
    fn from(s: TcpStream) -> Self {
        Connection::Plain(s)
    }
}

impl Connection {
    /// Write `bufs` as one vectored write, with the socket's own calls: `send(2)` for one
    /// buffer, `sendmsg(2)` for several. `writev(2)` (what [`AsyncWrite::poll_write_vectored`]
    /// does on a `TcpStream`) goes through the file layer first (position lock, permission
    /// and notification hooks), a cost paid once per listener per write on the fan-out's
    /// hot path.
    pub(crate) fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self {
            Connection::Plain(s) => loop {
                std::task::ready!(s.poll_write_ready(cx))?;
                let sent = s.try_io(tokio::io::Interest::WRITABLE, || match bufs {
                    // A closed peer is an error (EPIPE), never a SIGPIPE.
                    [one] => socket2::SockRef::from(&*s).send_with_flags(one, libc::MSG_NOSIGNAL),
                    _ => socket2::SockRef::from(&*s)
                        .send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
                });
                match sent {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
        }
    }
}

impl Connection {
    /// [`Connection::poll_send_vectored`] without waiting: `WouldBlock` when the socket is
    /// full (or known not to be writable yet).
    /// `sendfile` of a mount's stream range (see [`Fanout::send_file`]) without waiting.
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
        }
    }

    pub(crate) fn try_send_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => s.try_io(tokio::io::Interest::WRITABLE, || match bufs {
                [one] => socket2::SockRef::from(s).send_with_flags(one, libc::MSG_NOSIGNAL),
                _ => socket2::SockRef::from(s).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL),
            }),
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
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_plain_connection_costs_nothing_over_its_socket() {
        assert_eq!(
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<TcpStream>()
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
}
