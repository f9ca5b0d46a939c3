//! `/metrics` on the separate metrics listener: the counters for real API
//! traffic carry the right labels, and no label ever carries an email, a
//! token, a session id or a raw path. One process-wide recorder is shared by
//! every server in this binary, so assertions are "at least", never exact.

mod common;

use common::*;
use std::collections::BTreeMap;

/// One sample line of the text exposition: name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample has a value");
            let value = value.parse().expect("a numeric value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("labels end with }");
                    let labels = inner
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include all of `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(url: &str) -> String {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn api_traffic_is_counted_by_route_and_result_without_personal_data() {
    let srv = TestServer::with(|c| c.metrics_bind = Some("127.0.0.1:0".into())).await;
    let url = srv.metrics_url().expect("metrics enabled");
    let email = "metrics-user@example.com";
    let mut d = srv.device();

    assert_eq!(d.register(email).await.status, 201);
    assert_eq!(d.login(email, PASSWORD).await.status, 200);
    let wrong = d.login(email, "not the password at all").await;
    assert_eq!(wrong.code(), "invalid_credentials");
    let parent = d.clone();
    assert_eq!(d.refresh().await.status, 200, "rotated");
    assert_eq!(parent.refresh_raw().await.status, 200, "grace answer");
    let sid = d.me().await.body["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other_sid = "AAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(
        d.delete(&format!("/auth/sessions/{other_sid}"))
            .await
            .code(),
        "not_found"
    );
    assert_eq!(d.get("/no-such-path/secret-ish").await.code(), "not_found");
    let mut thief = parent.clone();
    thief.ua = "curl/8.5.0".into();
    assert_eq!(thief.refresh_raw().await.code(), "refresh_token_reused");

    let text = scrape(&url).await;
    let s = parse(&text);
    let req = "sesame_http_requests_total";
    for (route, method, status) in [
        ("/auth/register", "POST", "201"),
        ("/auth/login", "POST", "200"),
        ("/auth/login", "POST", "401"),
        ("/auth/refresh", "POST", "200"),
        ("/auth/refresh", "POST", "401"),
        ("/auth/me", "GET", "200"),
        ("/auth/sessions/{id}", "DELETE", "404"),
        ("unmatched", "GET", "404"),
    ] {
        let n = value(
            &s,
            req,
            &[("route", route), ("method", method), ("status", status)],
        );
        assert!(n >= 1.0, "{route} {method} {status}: {n}\n{text}");
    }
    let login_latency = value(
        &s,
        "sesame_http_request_duration_seconds_count",
        &[("route", "/auth/login"), ("method", "POST")],
    );
    assert!(login_latency >= 2.0, "{text}");
    assert!(
        s.iter()
            .any(|x| x.name == "sesame_http_request_duration_seconds_bucket"
                && x.labels.contains_key("le")),
        "latency is a histogram with buckets"
    );
    for (name, labels) in [
        ("sesame_logins_total", [("result", "ok")]),
        ("sesame_logins_total", [("result", "failed")]),
        ("sesame_refreshes_total", [("result", "rotated")]),
        ("sesame_refreshes_total", [("result", "grace")]),
        ("sesame_refreshes_total", [("result", "reused")]),
        ("sesame_refresh_reuse_total", [("class", "likely_theft")]),
    ] {
        let n = value(&s, name, &labels);
        assert!(n >= 1.0, "{name} {labels:?}: {n}\n{text}");
    }
    assert!(value(&s, "sesame_grace_answers_total", &[]) >= 1.0);
    assert!(
        s.iter()
            .any(|x| x.name == "sesame_revocation_sync_age_seconds"),
        "{text}"
    );
    assert!(
        s.iter().any(|x| x.name == "sesame_overloaded_total"),
        "zeroed until the first refusal: {text}"
    );
    assert!(
        s.iter().any(|x| x.name == "sesame_live_sessions"),
        "the live-sessions gauge (counted at start, then every 30 s): {text}"
    );

    // Nothing personal or secret, and no raw path, in any label.
    let secrets = [
        email.to_string(),
        d.access.clone().unwrap(),
        d.refresh_cookie.clone().unwrap(),
        parent.refresh_cookie.clone().unwrap(),
        sid,
        other_sid.to_string(),
        "secret-ish".to_string(),
    ];
    for x in &s {
        for v in x.labels.values() {
            assert!(!v.contains('@'), "an email-like label: {}={v}", x.name);
            assert!(!v.starts_with("srt_") && !v.starts_with("ey"), "{v}");
        }
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret} leaked:\n{text}");
    }
}

#[tokio::test]
async fn a_taken_metrics_port_fails_the_start_and_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = match TestServer::try_with(move |c| c.metrics_bind = Some(addr.clone())).await {
        Ok(_) => panic!("started although the metrics port is taken"),
        Err(e) => e,
    };
    assert!(err.contains("metrics_bind"), "{err}");
}

#[tokio::test]
async fn stop_closes_the_metrics_listener() {
    let srv = TestServer::with(|c| c.metrics_bind = Some("127.0.0.1:0".into())).await;
    let url = srv.metrics_url().unwrap();
    scrape(&url).await;
    srv.stop().await;
    assert!(
        reqwest::get(&url).await.is_err(),
        "still answering after stop"
    );
}

#[tokio::test]
async fn metrics_are_not_served_on_the_api_listener() {
    let srv = TestServer::with(|c| c.metrics_bind = Some("127.0.0.1:0".into())).await;
    let a = srv.device().get("/metrics").await;
    assert_eq!((a.status.as_u16(), a.code()), (404, "not_found"));
}
