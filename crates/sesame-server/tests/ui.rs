//! The web UI through the real server: every page and asset answers with
//! the headers of DESIGN §7, the embedded client is the workspace's
//! `clients/js/sesame.js` with a JavaScript content type, and paths that are
//! not pages stay problem+json 404s.

mod common;

use common::*;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'; object-src 'none'";

fn security_headers(path: &str, a: &Answer, csp: &str) {
    assert_eq!(a.headers["content-security-policy"], csp, "{path}");
    assert_eq!(a.headers["x-frame-options"], "DENY", "{path}");
    assert_eq!(a.headers["referrer-policy"], "no-referrer", "{path}");
    assert_eq!(a.headers["x-content-type-options"], "nosniff", "{path}");
}

#[tokio::test]
async fn pages_and_assets_carry_the_csp_and_framing_headers() {
    let srv = TestServer::start().await;
    let d = srv.device();
    for (path, kind) in [
        ("/login", "text/html"),
        ("/register", "text/html"),
        ("/dashboard", "text/html"),
        ("/verify", "text/html"),
        ("/forgot", "text/html"),
        ("/reset", "text/html"),
        ("/maintenance", "text/html"),
        ("/ui/sesame.js", "text/javascript"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let a = d.get(path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        let ct = a.headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        security_headers(path, &a, CSP);
        if kind == "text/html" {
            // No inline script or style: the CSP would block it anyway.
            assert!(
                a.text
                    .contains(r#"<script type="module" src="/ui/app.js"></script>"#)
            );
            assert!(
                !a.text.contains("<script>") && !a.text.contains("style="),
                "{path}"
            );
        }
    }
    // The link pages read their token from the fragment, which never
    // reaches the server: a token in the query is not how they work, and
    // the page is the same static shell either way.
    let shell = d.get("/reset").await;
    let with_query = d.get("/reset?token=spr_x").await;
    assert_eq!(shell.text, with_query.text);
    for (path, marker) in [
        ("/verify", r#"data-page="verify""#),
        ("/forgot", r#"id="forgot-form""#),
        ("/reset", r#"id="reset-form""#),
        ("/login", r#"autocomplete="one-time-code""#),
        ("/login", r#"href="/forgot""#),
        ("/dashboard", r#"id="reauth-form""#),
        ("/dashboard", r#"id="totp-enrol""#),
        ("/dashboard", r#"id="delete-start""#),
    ] {
        assert!(d.get(path).await.text.contains(marker), "{path}: {marker}");
    }
    let js = d.get("/ui/sesame.js").await;
    assert_eq!(
        js.text,
        include_str!("../../../clients/js/sesame.js"),
        "the embedded client is clients/js/sesame.js"
    );
}

#[tokio::test]
async fn api_origins_join_connect_src() {
    let srv = TestServer::with(|c| {
        c.allowed_origins = Some(vec!["http://127.0.0.1:9000".into()]);
    })
    .await;
    let a = srv.device().get("/dashboard").await;
    assert_eq!(
        a.headers["content-security-policy"],
        CSP.replace(
            "connect-src 'self'",
            "connect-src 'self' http://127.0.0.1:9000"
        )
    );
}

#[tokio::test]
async fn the_root_redirects_to_the_dashboard_and_unknown_paths_stay_problems() {
    let srv = TestServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let d = srv.device();
    let r = http.get(format!("{}/", d.base)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard");
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    for path in ["/ui/missing.js", "/login/extra", "/nope"] {
        let a = d.get(path).await;
        assert_eq!(a.status, 404, "{path}");
        assert!(a.is_problem(), "{path}: {}", a.text);
        assert_eq!(a.code(), "not_found");
    }
    // Pages are GET only; other methods are the usual 405 problem.
    let a = answer(
        d.request(reqwest::Method::POST, "/login")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 405);
    assert!(a.is_problem());
}
