//! A form POSTed to a URL, and the head of its answer: what Icecast's url authentication
//! sends its `listener_add` and `listener_remove` URLs (the server's listener gate uses it).

use tokio::io::AsyncWriteExt;

use crate::conn::connect;
use crate::http::{latin1_or_utf8, read_head};
use crate::{ClientError, Endpoint, USER_AGENT};

/// The head of an answer: its status and headers (names in lower case, values trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub code: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// POSTs `form` (`application/x-www-form-urlencoded`, already encoded) to the endpoint's
/// URL (its path and query), with Basic credentials when the URL has a password, and reads
/// the answer's head (at most 16 KiB; the body is not read). Not bounded in time: the
/// caller puts it under its own timeout.
pub async fn post(endpoint: &Endpoint, form: &str) -> Result<Answer, ClientError> {
    let mut conn = connect(endpoint).await?;
    conn.write_all(request(endpoint, form).as_bytes())
        .await
        .map_err(ClientError::Lost)?;
    let (head, _) = read_head(&mut conn).await?;
    Ok(Answer {
        code: head.code,
        headers: head
            .headers()
            .map(|(n, v)| (n.to_string(), latin1_or_utf8(v).trim().to_string()))
            .collect(),
    })
}

/// The request (pure: the wire bytes, pinned by a test).
fn request(endpoint: &Endpoint, form: &str) -> String {
    let mut req = format!(
        "POST {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        endpoint.url.mount,
        endpoint.url.authority(),
        form.len()
    );
    if let Some(auth) = endpoint.basic_auth() {
        req.push_str(&format!("Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(form);
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_pinned() {
        let e = Endpoint::new("http://hook:pw@h:9000/auth?k=1".parse().expect("url"));
        assert_eq!(
            request(&e, "action=listener_add&user=a"),
            format!(
                "POST /auth?k=1 HTTP/1.0\r\nHost: h:9000\r\nUser-Agent: {USER_AGENT}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\
                 Authorization: Basic aG9vazpwdw==\r\n\r\naction=listener_add&user=a"
            )
        );
        let e = Endpoint::new("http://h:9000/auth".parse().expect("url"));
        assert!(!request(&e, "").contains("Authorization"));
    }
}
