//! The web UI of DESIGN §7: a few static pages and their assets, embedded
//! in the binary so `sesame serve` needs no files beside it.
//!
//! The pages are plain HTML shells; everything they show comes from the
//! JSON API through the real browser client (`clients/js/sesame.js`,
//! embedded from the workspace so the UI can never drift from the published
//! client). No inline script or style anywhere: the Content-Security-Policy
//! below forbids both, which is what makes an injected `<script>` inert.
//!
//! Adding a page: a fragment under `ui/pages/`, one [`Page`] entry in
//! [`PAGES`], and its `init` function in `ui/app.js`.

use super::extract::AppState;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

/// One HTML page of the UI.
#[derive(Debug)]
struct Page {
    /// Its path, also the `data-page` that `app.js` dispatches on (without `/`).
    path: &'static str,
    /// The `<title>`, before " · Sesame".
    title: &'static str,
    /// The contents of `<main>`.
    body: &'static str,
}

/// Every page.
const PAGES: &[Page] = &[
    Page {
        path: "/login",
        title: "Sign in",
        body: include_str!("../../ui/pages/login.html"),
    },
    Page {
        path: "/register",
        title: "Create an account",
        body: include_str!("../../ui/pages/register.html"),
    },
    Page {
        path: "/dashboard",
        title: "Your account",
        body: include_str!("../../ui/pages/dashboard.html"),
    },
    Page {
        path: "/verify",
        title: "Confirm your email",
        body: include_str!("../../ui/pages/verify.html"),
    },
    Page {
        path: "/forgot",
        title: "Forgot password",
        body: include_str!("../../ui/pages/forgot.html"),
    },
    Page {
        path: "/reset",
        title: "Set a new password",
        body: include_str!("../../ui/pages/reset.html"),
    },
    Page {
        path: "/maintenance",
        title: "Temporarily unavailable",
        body: include_str!("../../ui/pages/maintenance.html"),
    },
];

/// The shell around every page. The maintenance view and the banner live
/// here so any loaded page can show them without a navigation (§7: the
/// maintenance view is rendered by the loaded page).
const LAYOUT: &str = include_str!("../../ui/layout.html");

/// The browser client, embedded from the workspace.
const CLIENT_JS: &str = include_str!("../../../../clients/js/sesame.js");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE_CSS: &str = include_str!("../../ui/style.css");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The UI's routes, each answer carrying the headers of §7. `api_origins`
/// (the configured `allowed_origins`) join `connect-src`.
pub fn router(api_origins: &[String]) -> Router<AppState> {
    let mut r = Router::new().route("/", get(|| async { Redirect::to("/dashboard") }));
    for page in PAGES {
        r = r.route(page.path, get(move || async move { html(page) }));
    }
    r.route("/ui/sesame.js", get(|| async { asset(JS, CLIENT_JS) }))
        .route("/ui/app.js", get(|| async { asset(JS, APP_JS) }))
        .route("/ui/style.css", get(|| async { asset(CSS, STYLE_CSS) }))
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(api_origins),
        ))
        .layer(header_layer(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(header_layer(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(header_layer(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}

/// The Content-Security-Policy of §7, exactly.
pub fn content_security_policy(api_origins: &[String]) -> HeaderValue {
    let mut connect = String::from("'self'");
    for o in api_origins {
        // Origins were parsed and serialised by the config, so they hold no
        // `;` or whitespace that could break out of the directive; check anyway.
        if o.bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
        {
            connect.push(' ');
            connect.push_str(o);
        }
    }
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
         object-src 'none'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
             object-src 'none'",
        )
    })
}

fn header_layer(name: HeaderName, value: HeaderValue) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, value)
}

fn html(page: &Page) -> Response {
    let name = page.path.trim_start_matches('/');
    let body = LAYOUT
        .replace("{{title}}", page.title)
        .replace("{{page}}", name)
        .replace("{{main}}", page.body);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HTML),
            // Pages hold no user data (that comes from the API), but the
            // assets change with the binary: always revalidate.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_lists_api_origins_in_connect_src_only() {
        let csp = content_security_policy(&["https://api.example.com".to_owned()]);
        assert_eq!(
            csp.to_str().unwrap(),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' https://api.example.com; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'; object-src 'none'"
        );
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for p in PAGES {
            let body = LAYOUT.replace("{{main}}", p.body);
            for bad in [
                "<script>",
                "style=",
                "<style",
                "onclick",
                "onsubmit",
                "javascript:",
            ] {
                assert!(!body.contains(bad), "{}: {bad}", p.path);
            }
        }
    }
}
