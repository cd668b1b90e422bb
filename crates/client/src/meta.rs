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
    admin_get(endpoint, &request(endpoint, title))
        .await
        .map(drop)
}

/// The mounts a server lists in `/admin/streamlist.txt` (Icecast's master/slave protocol: the
/// endpoint's credentials are the master's relay user or an admin). At most `max` mounts are
/// returned; lines that are not mount paths are skipped.
pub async fn stream_list(endpoint: &Endpoint, max: usize) -> Result<Vec<String>, ClientError> {
    let req = get_request(endpoint, "/admin/streamlist.txt", "");
    let body = admin_get(endpoint, &req).await?;
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/') && l.len() > 1 && !l.chars().any(char::is_control))
        .take(max)
        .map(str::to_string)
        .collect())
}

/// One admin request, its answer's body (at most [`MAX_ANSWER`] bytes), bounded by
/// [`IO_TIMEOUT`].
async fn admin_get(endpoint: &Endpoint, req: &str) -> Result<Vec<u8>, ClientError> {
    let exchange = async {
        let mut conn = connect(endpoint).await?;
        conn.write_all(req.as_bytes())
            .await
            .map_err(ClientError::Lost)?;
        let mut resp = Vec::new();
        (&mut conn)
            .take(MAX_ANSWER)
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
}
