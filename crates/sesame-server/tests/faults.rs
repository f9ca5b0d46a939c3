//! Store faults (SECURITY.md F7 for the embedded store): affected routes
//! answer 503 `storage_unavailable`, readiness says not ready, nothing is
//! half-written, logout never reports success it did not commit, and
//! service resumes by itself. Also: two instances on one database.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn store_down_answers_503_and_recovers_with_nothing_half_written() {
    let srv = TestServer::with_faults(|_| {}).await;
    let faults = srv.faults.clone().unwrap();
    let mut d = srv.device();
    assert_eq!(d.register("down@example.com").await.status, 201);
    let before = d.clone();

    faults.set_down(true);
    for a in [
        d.refresh_raw().await,
        d.login("down@example.com", PASSWORD).await,
        d.post("/auth/logout", None).await,
        d.me().await,
        d.get("/auth/sessions").await,
    ] {
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (503, "storage_unavailable"),
            "{}",
            a.text
        );
        assert!(a.headers.contains_key("retry-after"));
        assert!(
            a.cookie("__Host-sesame_rt").is_none(),
            "no cookie change during an outage"
        );
    }
    let ready = d.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.body["reason"], "storage_unavailable");
    assert_eq!(
        d.get("/healthz").await.status,
        200,
        "the process itself is alive"
    );

    faults.set_down(false);
    assert_eq!(d.get("/readyz").await.status, 200);
    // Nothing rotated and nothing was revoked while down: the old token still rotates.
    let mut d = before;
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(d.me().await.status, 200);
}

/// F7: the store fails after the rotation committed (loading the user). The
/// client saw a 503; its retry with the same token gets the committed
/// successor as a grace answer: never both tokens usable, never neither.
#[tokio::test]
async fn f7_failure_after_commit_leaves_exactly_one_chain() {
    let srv = TestServer::with_faults(|_| {}).await;
    let faults = srv.faults.clone().unwrap();
    let mut d = srv.device();
    d.register("f7@example.com").await;
    // Refresh = rotate (call 1), then load the user (call 2): fail the second.
    faults.fail_nth(2);
    let lost = d.refresh_raw().await;
    assert_eq!(
        (lost.status.as_u16(), lost.code()),
        (503, "storage_unavailable"),
        "{}",
        lost.text
    );
    let retry = d.refresh_raw().await;
    assert_eq!(
        retry.status, 200,
        "the retry within grace gets the committed successor: {}",
        retry.text
    );
    d.absorb(&retry);
    assert_eq!(d.refresh().await.status, 200);
    assert_eq!(d.me().await.status, 200);

    // The rotation itself failing: nothing committed, the old token still rotates once.
    let before = d.clone();
    faults.fail_nth(1);
    assert_eq!(d.refresh_raw().await.code(), "storage_unavailable");
    let mut again = before;
    assert_eq!(again.refresh().await.status, 200);
}

/// Logout during an outage must not claim success.
#[tokio::test]
async fn logout_fails_closed() {
    let srv = TestServer::with_faults(|_| {}).await;
    let faults = srv.faults.clone().unwrap();
    let mut d = srv.device();
    d.register("closed@example.com").await;
    faults.set_down(true);
    let out = d.post("/auth/logout-all", None).await;
    assert_eq!(out.status, 503);
    assert!(out.cookie("__Host-sesame_rt").is_none());
    faults.set_down(false);
    assert_eq!(d.me().await.status, 200, "nothing was revoked");
    assert_eq!(d.post("/auth/logout-all", None).await.status, 204);
    assert_eq!(d.me().await.code(), "session_revoked");
}

/// Two instances on one database: a token minted by one verifies on the
/// other, and a revocation on one is enforced by the other's liveness check
/// within a second (its revocation sync runs every 500 ms).
#[tokio::test]
async fn two_instances_share_sessions_and_revocations() {
    let a = TestServer::start().await;
    let b = a.sibling().await;
    let mut on_a = a.device();
    on_a.register("two@example.com").await;
    let mut on_b = on_a.clone();
    on_b.base = b.base.clone();
    assert_eq!(on_b.me().await.status, 200, "minted on A, verified on B");
    let mut other = a.device();
    other.login("two@example.com", PASSWORD).await;
    let mut other_b = other.clone();
    other_b.base = b.base.clone();
    assert_eq!(other_b.me().await.status, 200);

    // Revoke on A; B must refuse within a second (bounded wait, real time).
    let sid = other.me().await.body["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        on_a.delete(&format!("/auth/sessions/{sid}")).await.status,
        204
    );
    let started = std::time::Instant::now();
    let mut refused = None;
    while started.elapsed() < Duration::from_secs(3) {
        let r = other_b.me().await;
        if r.status == 401 {
            refused = Some((started.elapsed(), r));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after, r) = refused.expect("B enforces A's revocation");
    assert_eq!(r.body["reason"], "revoked_by_user");
    assert!(after <= Duration::from_millis(1500), "took {after:?}");

    // A refresh rotated on B is known to A.
    let old = on_a.clone();
    assert_eq!(on_b.refresh().await.status, 200);
    on_a.refresh_cookie = on_b.refresh_cookie.clone();
    assert_eq!(on_a.refresh().await.status, 200);
    a.clock.advance(61);
    assert_eq!(old.refresh_raw().await.code(), "refresh_token_reused");
    b.stop().await;
}
