//! A minimal server-sent-events reader for tests of the revocation feed.

use super::TestServer;
use serde_json::Value;
use std::time::Duration;

/// A minimal SSE reader over a live response.
pub struct Feed {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug, Clone)]
pub struct Ev {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl Feed {
    pub async fn open(
        srv: &TestServer,
        key: &str,
        query: &str,
        last_id: Option<&str>,
    ) -> reqwest::Response {
        let mut rb = reqwest::Client::new()
            .get(format!("{}/auth/revocations{query}", srv.base))
            .bearer_auth(key);
        if let Some(id) = last_id {
            rb = rb.header("last-event-id", id);
        }
        rb.send().await.unwrap()
    }

    pub fn from_response(resp: reqwest::Response) -> Self {
        Self {
            resp,
            buf: String::new(),
        }
    }

    pub async fn connect(srv: &TestServer, key: &str, query: &str) -> Self {
        let resp = Self::open(srv, key, query, None).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event within `limit`; `None` on timeout or end of stream.
    pub async fn next(&mut self, limit: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Ev {
                    event: "message".into(),
                    id: None,
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().into());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() && ev.id.is_none() && ev.event == "message" {
                    continue; // a comment or retry-only block
                }
                ev.data = serde_json::from_str(&data).unwrap_or(Value::Null);
                return Some(ev);
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// Events up to and including the first of kind `until`.
    pub async fn until(&mut self, until: &str, limit: Duration) -> Vec<Ev> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(limit).await {
            let stop = ev.event == until;
            out.push(ev);
            if stop {
                return out;
            }
        }
        panic!("no `{until}` event within {limit:?}; got {out:?}");
    }
}
