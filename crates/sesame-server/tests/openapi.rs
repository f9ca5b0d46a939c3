//! `GET /openapi.json` through the real server: an OpenAPI 3.1 document
//! that lists every route of the router, documents problem answers and
//! security, and whose response schemas match what the handlers really send.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

/// Every route registered in app.rs (and `/metrics`, served on the metrics
/// listener). A route added to the router must be added here and documented.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/auth/register"),
    ("post", "/auth/login"),
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
    ("post", "/auth/logout-all"),
    ("post", "/auth/logout-others"),
    ("get", "/auth/me"),
    ("get", "/auth/sessions"),
    ("delete", "/auth/sessions/{id}"),
    ("post", "/auth/password"),
    ("post", "/auth/login/mfa"),
    ("post", "/auth/verify"),
    ("post", "/auth/verify/resend"),
    ("post", "/auth/password/forgot"),
    ("post", "/auth/password/reset"),
    ("post", "/auth/reauthenticate"),
    ("post", "/auth/email"),
    ("post", "/auth/mfa/totp"),
    ("delete", "/auth/mfa/totp"),
    ("post", "/auth/mfa/totp/confirm"),
    ("delete", "/auth/account"),
    ("post", "/auth/session/exchange"),
    ("get", "/auth/revocations"),
    ("post", "/admin/sessions"),
    ("delete", "/admin/sessions/{sid}"),
    ("get", "/admin/users/{id}/sessions"),
    ("delete", "/admin/users/{id}/sessions"),
    ("put", "/admin/users/{id}/claims"),
    ("post", "/admin/users/{id}/disable"),
    ("post", "/admin/users/{id}/enable"),
    ("delete", "/admin/users/{id}"),
    ("post", "/admin/keys/rotate"),
    ("get", "/admin/audit"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
    ("get", "/metrics"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

async fn document(srv: &TestServer) -> Value {
    let a = srv.device().get("/openapi.json").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.headers["cache-control"], "public, max-age=300");
    a.body
}

/// The property names of `components.schemas.<name>`.
fn properties(doc: &Value, name: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {name} has properties"))
        .keys()
        .cloned()
        .collect()
}

fn required(doc: &Value, name: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][name]["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// An answer's members are all documented, and every required one is there.
fn conforms(doc: &Value, schema: &str, v: &Value) {
    let (got, props, req) = (keys(v), properties(doc, schema), required(doc, schema));
    assert!(
        got.is_subset(&props),
        "{schema}: undocumented members {:?}",
        got.difference(&props).collect::<Vec<_>>()
    );
    assert!(
        req.is_subset(&got),
        "{schema}: required members missing {:?}",
        req.difference(&got).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(*m).is_some() {
                documented.insert((m.to_string(), path.clone()));
            }
        }
    }
    let routes: BTreeSet<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, routes,
        "documented operations = the router's routes"
    );

    // And the list is the router's: each route is answered by its handler
    // (not the 404 fallback or 405), except /metrics, which lives on the
    // metrics listener.
    let d = srv.device();
    for (m, p) in ROUTES {
        let path = p.replace("{id}", "AAAAAAAAAAAAAAAAAAAAAA");
        let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap();
        let a = answer(d.request(method, &path).send().await.unwrap()).await;
        if *p == "/metrics" {
            assert_eq!(a.status, 404, "/metrics is not on the API listener");
            let servers = &doc["paths"]["/metrics"]["servers"];
            assert!(servers[0]["url"].is_string(), "{servers}");
        } else {
            assert_ne!(a.status, 405, "{m} {p}: {}", a.text);
            assert!(
                !(a.status == 404 && a.code() == "not_found" && *p != "/auth/sessions/{id}"),
                "{m} {p} is not routed: {}",
                a.text
            );
        }
    }
}

#[tokio::test]
async fn login_documents_its_problems_and_me_requires_bearer() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    let login = &doc["paths"]["/auth/login"]["post"];
    for status in ["200", "400", "401", "403", "413", "415", "503"] {
        assert!(login["responses"][status].is_object(), "login {status}");
    }
    let unauthorized = &login["responses"]["401"];
    assert!(
        unauthorized["description"]
            .as_str()
            .unwrap()
            .contains("invalid_credentials")
    );
    let problem = &unauthorized["content"]["application/problem+json"]["schema"];
    assert_eq!(
        problem["$ref"], "#/components/schemas/Problem",
        "{unauthorized}"
    );
    let forbidden = login["responses"]["403"]["description"].as_str().unwrap();
    for code in ["csrf_rejected", "account_disabled", "email_not_verified"] {
        assert!(forbidden.contains(code), "{forbidden}");
    }
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Credentials"
    );
    let params: Vec<(String, String)> = login["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["in"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(params.contains(&("Sesame-Transport".into(), "header".into())));
    assert!(params.contains(&("__Host-sesame_rt".into(), "cookie".into())));

    let problem = properties(&doc, "Problem");
    for m in [
        "type", "title", "status", "code", "detail", "errors", "reason",
    ] {
        assert!(problem.contains(m), "Problem.{m}");
    }

    let me = &doc["paths"]["/auth/me"]["get"];
    let security = me["security"].as_array().unwrap();
    assert!(security.iter().any(|s| s.get("bearer").is_some()), "{me}");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
    // Public routes carry no security requirement.
    assert!(
        doc["paths"]["/auth/login"]["post"]
            .get("security")
            .is_none()
    );
}

/// The response schemas describe what the handlers really send: a member
/// added to a handler without its schema fails here.
#[tokio::test]
async fn response_schemas_match_real_answers() {
    let srv = TestServer::start().await;
    let doc = document(&srv).await;
    let mut d = srv.device();
    let reg = d.register("schema@example.com").await;
    assert_eq!(reg.status, 201);
    conforms(&doc, "TokenResponse", &reg.body);
    conforms(&doc, "User", &reg.body["user"]);

    let mut b = srv.device();
    let bearer = b
        .login_as("schema@example.com", PASSWORD, Some("bearer"))
        .await;
    assert!(bearer.body["refresh_token"].is_string());
    conforms(&doc, "TokenResponse", &bearer.body);

    let me = d.me().await;
    conforms(&doc, "MeResponse", &me.body);
    // The session schema lists exactly what `session_json` emits.
    assert_eq!(keys(&me.body["session"]), properties(&doc, "Session"));
    assert_eq!(keys(&me.body["user"]), properties(&doc, "User"));

    // A revoked session shows too, with its reason.
    assert_eq!(b.post("/auth/logout", None).await.status, 204);
    let list = d.get("/auth/sessions").await;
    conforms(&doc, "SessionList", &list.body);
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{}", list.text);
    for s in sessions {
        assert_eq!(keys(s), properties(&doc, "Session"));
    }

    let jwks = d.get("/.well-known/jwks.json").await;
    conforms(&doc, "Jwks", &jwks.body);
    for k in jwks.body["keys"].as_array().unwrap() {
        conforms(&doc, "Jwk", k);
    }

    let wrong = d.login("schema@example.com", "wrong password!").await;
    assert!(wrong.is_problem());
    conforms(&doc, "Problem", &wrong.body);
    let invalid = srv.device().register("not an email").await;
    assert_eq!(invalid.code(), "invalid_request", "{}", invalid.text);
    conforms(&doc, "Problem", &invalid.body);
    conforms(&doc, "FieldError", &invalid.body["errors"][0]);

    conforms(&doc, "HealthStatus", &d.get("/healthz").await.body);
    conforms(&doc, "Readiness", &d.get("/readyz").await.body);
}
