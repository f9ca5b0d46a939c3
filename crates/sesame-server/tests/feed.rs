//! `GET /auth/revocations` through HTTP: snapshot then tail, resuming with
//! `after` / `Last-Event-ID`, heartbeats, the service key, and a server
//! restart in the middle of a stream losing no revocation.

mod common;

use common::sse::Feed;
use common::*;
use serde_json::Value;
use sesame_server::server::new_api_key;
use std::time::{Duration, Instant};

async fn server() -> (TestServer, String) {
    let k = new_api_key();
    let hash = k.hash.clone();
    let srv = TestServer::with(move |raw| {
        raw.service_api_keys = Some(vec![hash.clone()]);
        raw.revocation_feed_heartbeat = Some("1s".into());
    })
    .await;
    (srv, k.key)
}

async fn signed_in(srv: &TestServer, email: &str) -> (Device, String) {
    let mut d = srv.device();
    let a = d.register(email).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let sid = a.body["session_id"].as_str().unwrap().to_string();
    (d, sid)
}

#[tokio::test]
async fn snapshot_then_tail_within_a_second() {
    let (srv, key) = server().await;
    let (old, old_sid) = signed_in(&srv, "old@example.com").await;
    assert_eq!(old.post("/auth/logout", None).await.status, 204);

    let mut feed = Feed::connect(&srv, &key, "").await;
    let first = feed.until("ready", Duration::from_secs(5)).await;
    let revoked: Vec<_> = first.iter().filter(|e| e.event == "revoked").collect();
    assert_eq!(revoked.len(), 1, "{first:?}");
    assert_eq!(revoked[0].data["sid"], old_sid.as_str());
    assert_eq!(revoked[0].data["reason"], "logout");
    let seq = revoked[0].data["seq"].as_i64().unwrap();
    assert_eq!(revoked[0].id.as_deref(), Some(seq.to_string().as_str()));
    assert_eq!(first.last().unwrap().data["seq"], seq);

    // Tail: each new revocation arrives, in order, well within a second.
    let mut latencies = Vec::new();
    for i in 0..5 {
        let (d, sid) = signed_in(&srv, &format!("t{i}@example.com")).await;
        let t = Instant::now();
        assert_eq!(d.post("/auth/logout", None).await.status, 204);
        let ev = loop {
            let ev = feed.next(Duration::from_secs(3)).await.expect("an event");
            if ev.event == "revoked" {
                break ev;
            }
        };
        latencies.push(t.elapsed());
        assert_eq!(ev.data["sid"], sid.as_str());
        assert!(ev.data["seq"].as_i64().unwrap() > seq);
    }
    latencies.sort();
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(1),
        "{latencies:?}"
    );

    // Heartbeats carry the last seq.
    let hb = feed.until("heartbeat", Duration::from_secs(3)).await;
    assert!(hb.last().unwrap().data["now"].is_i64());
}

#[tokio::test]
async fn resume_with_after_or_last_event_id_and_expired_rows_leave_the_snapshot() {
    let (srv, key) = server().await;
    let mut sids = Vec::new();
    for i in 0..3 {
        let (d, sid) = signed_in(&srv, &format!("r{i}@example.com")).await;
        d.post("/auth/logout", None).await;
        sids.push(sid);
    }
    let all = Feed::connect(&srv, &key, "?after=0")
        .await
        .until("ready", Duration::from_secs(5))
        .await;
    let seqs: Vec<i64> = all
        .iter()
        .filter(|e| e.event == "revoked")
        .map(|e| e.data["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let after_first = Feed::connect(&srv, &key, &format!("?after={}", seqs[0]))
        .await
        .until("ready", Duration::from_secs(5))
        .await;
    let got: Vec<_> = after_first
        .iter()
        .filter(|e| e.event == "revoked")
        .map(|e| e.data["sid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, sids[1..].to_vec());

    let resp = Feed::open(&srv, &key, "", Some(&seqs[1].to_string())).await;
    let mut by_header = Feed::from_response(resp);
    let got = by_header.until("ready", Duration::from_secs(5)).await;
    assert_eq!(got.iter().filter(|e| e.event == "revoked").count(), 1);

    // Past not_after (access_ttl + leeway), a snapshot leaves rows out: no
    // token they concern can still be valid. A resume still lists them.
    srv.clock.advance(700);
    let snap = Feed::connect(&srv, &key, "")
        .await
        .until("ready", Duration::from_secs(5))
        .await;
    assert_eq!(snap.iter().filter(|e| e.event == "revoked").count(), 0);
    assert_eq!(snap.last().unwrap().data["seq"], seqs[2]);
}

#[tokio::test]
async fn the_feed_needs_a_service_key_and_a_sane_cursor() {
    let (srv, key) = server().await;
    for bad in [String::new(), new_api_key().key] {
        let r = Feed::open(&srv, &bad, "", None).await;
        assert_eq!(r.status(), 401);
    }
    for q in ["?after=-1", "?after=x", "?after=99999999999999999999"] {
        let r = Feed::open(&srv, &key, q, None).await;
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_request");
    }
    let r = Feed::open(&srv, &key, "", Some("garbage")).await;
    assert_eq!(r.status(), 400);
}

/// The server restarts with a feed open: the stream ends (graceful shutdown
/// does not hang on it), revocations made meanwhile by another instance are
/// delivered on reconnection with `after`, none lost.
#[tokio::test]
async fn restart_mid_stream_loses_no_revocation() {
    let (mut srv, key) = server().await;
    let (a, _) = signed_in(&srv, "a@example.com").await;
    let (b, b_sid) = signed_in(&srv, "b@example.com").await;
    let mut feed = Feed::connect(&srv, &key, "").await;
    let ready = feed.until("ready", Duration::from_secs(5)).await;
    let last = ready.last().unwrap().data["seq"].as_i64().unwrap();

    let other = srv.sibling().await;
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), srv.restart())
        .await
        .expect("graceful restart does not wait for open feeds");
    assert!(t.elapsed() < Duration::from_secs(5));
    // The old stream ended.
    while let Some(ev) = feed.next(Duration::from_secs(2)).await {
        assert_ne!(ev.event, "revoked", "{ev:?}");
    }
    // Revoked while the feed was down, on the other instance.
    let mut b_on_other = b.clone();
    b_on_other.base = other.base.clone();
    assert_eq!(b_on_other.post("/auth/logout", None).await.status, 204);
    drop(a);

    let mut again = Feed::connect(&srv, &key, &format!("?after={last}")).await;
    let got = again.until("ready", Duration::from_secs(5)).await;
    let revoked: Vec<_> = got.iter().filter(|e| e.event == "revoked").collect();
    assert_eq!(revoked.len(), 1, "{got:?}");
    assert_eq!(revoked[0].data["sid"], b_sid.as_str());
    other.stop().await;
}
