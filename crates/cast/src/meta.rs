//! The now-playing title, set through the server's Icecast admin endpoint
//! (`/admin/metadata?mount=&mode=updinfo&song=`), with the source's credentials.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::target::{IO_TIMEOUT, PushError, TargetUrl, percent_encode};

/// Sets the title of `url`'s mount. `password` is used when the URL has none; `tls` is
/// needed for an `https://` URL.
pub async fn set_title(
    url: &TargetUrl,
    password: Option<&str>,
    title: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(), PushError> {
    let mut req = format!(
        "GET /admin/metadata?mount={}&mode=updinfo&song={} HTTP/1.0\r\nHost: {}\r\nUser-Agent: agora/{}\r\n",
        percent_encode(&url.mount),
        percent_encode(title),
        url.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(auth) = url.basic_auth(password) {
        req.push_str(&format!("Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    let exchange = async {
        let tls = if url.tls {
            Some(tls.ok_or_else(|| {
                PushError::Connect(std::io::Error::other("https URL without TLS settings"))
            })?)
        } else {
            None
        };
        let mut s = crate::tls::connect(&url.host, url.port, tls)
            .await
            .map_err(PushError::Connect)?;
        s.write_all(req.as_bytes()).await.map_err(PushError::Lost)?;
        let mut resp = Vec::new();
        // The answer is small; a server that sends more than this is not worth reading.
        s.take(64 * 1024)
            .read_to_end(&mut resp)
            .await
            .map_err(PushError::Lost)?;
        Ok::<_, PushError>(resp)
    };
    let resp = tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|_| PushError::Timeout)??;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let body_at = match r.parse(&resp) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(PushError::BadResponse),
    };
    match r.code {
        Some(200..=299) => Ok(()),
        Some(401) => Err(PushError::Unauthorized),
        Some(code) => Err(PushError::Refused(
            code,
            String::from_utf8_lossy(&resp[body_at..])
                .trim()
                .chars()
                .take(200)
                .collect(),
        )),
        None => Err(PushError::BadResponse),
    }
}
