//! Bad input of every kind gets a 4xx problem+json, changes nothing, and
//! leaves the server healthy; CSRF refusals on every unsafe /auth/ route.

mod common;

use common::*;
use reqwest::Method;

#[tokio::test]
async fn malformed_bodies_and_headers() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("in@example.com").await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "application/json")
                .body("{\"email\":"),
            400,
            "invalid_request",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "application/json")
                .body("[]"),
            400,
            "invalid_request",
        ),
        // serde's derived structs also read an array of the fields in
        // order: that is not a body of this API, even with the right values.
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "application/json")
                .body(format!("[\"in@example.com\",\"{PASSWORD}\"]")),
            400,
            "invalid_request",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "application/json")
                .body("{\"email\":1,\"password\":2}"),
            400,
            "invalid_request",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "application/json")
                .body(vec![0xff, 0xfe, 0x00]),
            400,
            "invalid_request",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "text/plain")
                .body("{\"email\":\"in@example.com\",\"password\":\"x\"}"),
            415,
            "unsupported_media_type",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .body("email=x&password=y"),
            415,
            "unsupported_media_type",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"email\":\"{}\",\"password\":\"x\"}}",
                    "a".repeat(20_000)
                )),
            413,
            "payload_too_large",
        ),
        (
            d.request(Method::POST, "/auth/refresh")
                .header("content-type", "application/json")
                .body("{\"refresh_token\":"),
            400,
            "invalid_request",
        ),
        (
            d.request(Method::POST, "/auth/refresh")
                .header("cookie", "__Host-sesame_rt=srt_!!!@@@garbage"),
            401,
            "refresh_token_invalid",
        ),
        (
            d.request(Method::POST, "/auth/refresh")
                .header("cookie", "__Host-sesame_rt=a; __Host-sesame_rt=b"),
            400,
            "duplicate_cookie",
        ),
        (
            d.request(Method::POST, "/auth/refresh")
                .header("cookie", ";;;=;==; __Host-sesame_rt"),
            401,
            "refresh_token_invalid",
        ),
        (
            d.request(Method::POST, "/auth/login")
                .header("sesame-transport", "BEARER")
                .header("content-type", "application/json")
                .body("{\"email\":\"in@example.com\",\"password\":\"x\"}"),
            400,
            "invalid_request",
        ),
        (
            d.request(Method::GET, "/auth/sessions")
                .header("authorization", format!("Bearer {}", "x".repeat(10_000))),
            401,
            "invalid_token",
        ),
    ];
    for (i, (rb, status, code)) in cases.into_iter().enumerate() {
        let a = answer(rb.send().await.unwrap()).await;
        assert_eq!(
            (a.status.as_u16(), a.code()),
            (status, code),
            "case {i}: {}",
            a.text
        );
        assert!(
            a.is_problem(),
            "case {i} is problem+json: {:?} {}",
            a.headers,
            a.text
        );
    }
    // Oversized headers.
    let huge = answer(
        d.request(Method::GET, "/auth/me")
            .header("x-filler", "a".repeat(20_000))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (huge.status.as_u16(), huge.code()),
        (431, "headers_too_large")
    );
    assert!(huge.is_problem());
    // Duplicate cookies rotate nothing: the real cookie still works once.
    let mut dup = d.clone();
    let real = d.refresh_cookie.clone().unwrap();
    let a = answer(
        dup.request(Method::POST, "/auth/refresh")
            .header(
                "cookie",
                format!("__Host-sesame_rt={real}; __Host-sesame_rt={real}"),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.code(), "duplicate_cookie");
    assert_eq!(dup.refresh().await.status, 200);
    // Healthy after all of it.
    assert_eq!(d.get("/healthz").await.status, 200);
    assert_eq!(dup.me().await.status, 200);
}

#[tokio::test]
async fn csrf_refuses_foreign_null_and_missing_origins() {
    let srv = TestServer::start().await;
    let mut d = srv.device();
    d.register("csrf@example.com").await;
    let origins: [Option<&str>; 4] = [
        Some("https://evil.example"),
        Some("null"),
        None,
        Some("http://127.0.0.1:8081"),
    ];
    for path in [
        "/auth/login",
        "/auth/register",
        "/auth/refresh",
        "/auth/logout",
        "/auth/logout-all",
        "/auth/password",
    ] {
        for origin in origins {
            let mut x = d.clone();
            x.origin = origin.map(str::to_string);
            let a = x
                .post(
                    path,
                    Some(serde_json::json!({ "email": "csrf@example.com", "password": PASSWORD })),
                )
                .await;
            assert_eq!(
                (a.status.as_u16(), a.code()),
                (403, "csrf_rejected"),
                "{path} from {origin:?}: {}",
                a.text
            );
        }
    }
    // Without Origin, a same-origin Referer passes; a foreign one does not.
    let mut r = d.clone();
    r.origin = None;
    let ok = answer(
        r.request(Method::POST, "/auth/refresh")
            .header("referer", "http://127.0.0.1:8080/dashboard")
            .header(
                "cookie",
                format!("__Host-sesame_rt={}", d.refresh_cookie.clone().unwrap()),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let bad = answer(
        r.request(Method::POST, "/auth/logout")
            .header("referer", "https://evil.example/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad.code(), "csrf_rejected");
    // Nothing was revoked by the refused requests.
    d.absorb(&ok);
    assert_eq!(d.me().await.status, 200);
}

#[tokio::test]
async fn allowed_origins_pass_csrf_and_get_cors() {
    let srv =
        TestServer::with(|c| c.allowed_origins = Some(vec!["http://127.0.0.1:3000".into()])).await;
    let mut d = srv.device();
    d.origin = Some("http://127.0.0.1:3000".into());
    assert_eq!(d.register("cors@example.com").await.status, 201);
    let pre = answer(
        d.request(Method::OPTIONS, "/auth/refresh")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        pre.headers["access-control-allow-origin"],
        "http://127.0.0.1:3000"
    );
    assert_eq!(pre.headers["access-control-allow-credentials"], "true");
    let mut evil = d.clone();
    evil.origin = Some("http://127.0.0.1:4000".into());
    let no = answer(
        evil.request(Method::OPTIONS, "/auth/refresh")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        no.headers.get("access-control-allow-origin").is_none(),
        "CORS is never reflected"
    );
}

#[tokio::test]
async fn hashing_pool_refuses_past_its_queue_and_protected_routes_stay_up() {
    let srv = TestServer::with(|c| {
        c.hash_workers = Some(1);
        c.hash_queue = Some(1);
    })
    .await;
    let mut d = srv.device();
    d.register("flood@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let mut x = srv.device();
        tasks.push(tokio::spawn(async move {
            x.login("flood@example.com", PASSWORD).await
        }));
    }
    // During the flood, protected routes and refreshes answer.
    assert_eq!(d.me().await.status, 200);
    assert_eq!(d.refresh().await.status, 200);
    let mut overloaded = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => {}
            503 => {
                assert_eq!(a.code(), "overloaded");
                assert!(a.headers.contains_key("retry-after"));
                overloaded += 1;
            }
            s => panic!("unexpected {s}: {}", a.text),
        }
    }
    assert!(
        overloaded > 0,
        "excess logins are refused, not queued without bound"
    );
}
