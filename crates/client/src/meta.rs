//! The server's Icecast admin endpoint, from the client side: the now-playing title
//! (`GET /admin/metadata?mount=&mode=updinfo&song=`, with the source's credentials or an
//! admin's, named in the URL) and the list of mounts a master serves its relays
//! (`GET /admin/streamlist.txt`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::conn::connect;
use crate::http::{ResponseHead, get_request, head_len};
use crate::server_url::query_value;
use crate::{ClientError, Endpoint, IO_TIMEOUT};

/// The answer is small; a server that sends more than this is not worth reading.
const MAX_ANSWER: u64 = 64 * 1024;

/// Sets the title of the endpoint's mount. The whole exchange is bounded by [`IO_TIMEOUT`].
pub async fn set_title(endpoint: &Endpoint, title: &str) -> Result<(), ClientError> {
    admin_get(endpoint, &request(endpoint, title), MAX_ANSWER)
        .await
        .map(drop)
}

/// What a slave tells its master with each poll of the mount list, so that the master can
/// send it listeners: Icecast-KH's `rserver`, `rport` and `interval` query parameters, and
/// Agora's `maxlisteners` (servers that do not know it ignore it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The host name or address listeners reach this server at.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Seconds between two polls: the master forgets a slave that stops polling.
    pub interval_secs: u64,
    /// This server's listener limit.
    pub max_listeners: Option<usize>,
}

/// The mounts a server lists in `/admin/streamlist.txt` (Icecast's master/slave protocol: the
/// endpoint's credentials are the master's relay user or an admin), announcing this server
/// as a redirect target when `announce` is given. At most `max` mounts are returned; lines
/// that are not mount paths are skipped.
pub async fn stream_list(
    endpoint: &Endpoint,
    max: usize,
    announce: Option<&Announce>,
) -> Result<Vec<String>, ClientError> {
    let body = admin_get(
        endpoint,
        &stream_list_request(endpoint, announce),
        MAX_ANSWER,
    )
    .await?;
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/') && l.len() > 1 && !l.chars().any(char::is_control))
        .take(max)
        .map(str::to_string)
        .collect())
}

/// The body of `GET target` on the endpoint's server (a status page, say): at most `max`
/// bytes, the whole exchange bounded by [`IO_TIMEOUT`]; an answer other than 2xx is an error.
pub async fn get(endpoint: &Endpoint, target: &str, max: u64) -> Result<Vec<u8>, ClientError> {
    admin_get(endpoint, &get_request(endpoint, target, ""), max).await
}

/// The mount-list request (pure: the wire bytes, pinned by a test).
fn stream_list_request(endpoint: &Endpoint, announce: Option<&Announce>) -> String {
    let target = match announce {
        None => "/admin/streamlist.txt".to_string(),
        Some(a) => {
            let mut t = format!(
                "/admin/streamlist.txt?rserver={}&rport={}&interval={}",
                query_value(&a.host),
                a.port,
                a.interval_secs
            );
            if let Some(max) = a.max_listeners {
                t.push_str(&format!("&maxlisteners={max}"));
            }
            t
        }
    };
    get_request(endpoint, &target, "")
}

/// One request, its answer's body (at most `max` bytes), bounded by [`IO_TIMEOUT`].
async fn admin_get(endpoint: &Endpoint, req: &str, max: u64) -> Result<Vec<u8>, ClientError> {
    let exchange = async {
        let mut conn = connect(endpoint).await?;
        conn.write_all(req.as_bytes())
            .await
            .map_err(ClientError::Lost)?;
        let mut resp = Vec::new();
        (&mut conn)
            .take(max)
            .read_to_end(&mut resp)
            .await
            .map_err(ClientError::Lost)?;
        Ok::<_, ClientError>(resp)
    };
    let mut resp = tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|_| ClientError::Timeout)??;
    let n = head_len(&resp).ok_or(ClientError::BadResponse)?;
    match ResponseHead::parse(&resp[..n])?.code {
        200..=299 => Ok(resp.split_off(n)),
        401 => Err(ClientError::Unauthorized),
        code => Err(ClientError::refused(code, &resp[n..])),
    }
}

/// The request (pure: the wire bytes, pinned by a test).
fn request(endpoint: &Endpoint, title: &str) -> String {
    let target = format!(
        "/admin/metadata?mount={}&mode=updinfo&song={}",
        query_value(&endpoint.url.mount),
        query_value(title)
    );
    get_request(endpoint, &target, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::USER_AGENT;

    #[test]
    fn the_request_is_pinned() {
        let e = Endpoint::new("http://source:pw@h:8000/talk.mp3".parse().expect("url"));
        assert_eq!(
            request(&e, "Q&A: 10% left"),
            format!(
                "GET /admin/metadata?mount=%2Ftalk.mp3&mode=updinfo&song=Q%26A%3A%2010%25%20left HTTP/1.0\r\n\
                 Host: h:8000\r\nUser-Agent: {USER_AGENT}\r\nAuthorization: Basic c291cmNlOnB3\r\n\r\n"
            )
        );
    }

    #[test]
    fn the_announcing_poll_is_pinned() {
        let e = Endpoint::new(
            "http://relay:pw@o:8000/admin/streamlist.txt"
                .parse()
                .expect("url"),
        );
        assert_eq!(
            stream_list_request(&e, None),
            format!(
                "GET /admin/streamlist.txt HTTP/1.0\r\nHost: o:8000\r\nUser-Agent: {USER_AGENT}\r\n\
                 Authorization: Basic cmVsYXk6cHc=\r\n\r\n"
            )
        );
        let a = Announce {
            host: "edge-1.example.org".into(),
            port: 8001,
            interval_secs: 10,
            max_listeners: Some(400),
        };
        assert!(stream_list_request(&e, Some(&a)).starts_with(
            "GET /admin/streamlist.txt?rserver=edge-1.example.org&rport=8001&interval=10&maxlisteners=400 HTTP/1.0\r\n"
        ));
    }
}
