//! The live web dashboard every node serves at `/`: one HTML page, one
//! script, one style sheet and a vendored hls.js, all built into the binary
//! (no CDN, no build step). The page reads `GET /v1/overview` and follows
//! `GET /v1/events`; see `docs/dashboard.md`.
//!
//! Every asset carries a Content-Security-Policy that allows this node and
//! the other nodes of the cluster map (the player is redirected to the
//! serving node, and the page follows the supervisor's event stream) and
//! nothing else: no inline script, no external origin, no frames, no forms.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::host::shared::Shared;

/// The page.
pub const INDEX_HTML: &str = include_str!("../../assets/dashboard.html");
/// Its script.
pub const APP_JS: &str = include_str!("../../assets/dashboard.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("../../assets/dashboard.css");
/// hls.js (light build), vendored from the npm registry; version and
/// licence in `assets/README.md` and `assets/hls.js-LICENSE`.
pub const HLS_JS: &str = include_str!("../../assets/hls.light.min.js");

/// Where the assets are served.
pub const APP_JS_PATH: &str = "/dashboard/app.js";
/// Where the style sheet is served.
pub const APP_CSS_PATH: &str = "/dashboard/app.css";
/// Where hls.js is served.
pub const HLS_JS_PATH: &str = "/dashboard/hls.light.min.js";

/// The dashboard's routes.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route(APP_JS_PATH, get(app_js))
        .route(APP_CSS_PATH, get(app_css))
        .route(HLS_JS_PATH, get(hls_js))
        .with_state(shared)
}

/// The origins of the cluster as this node knows them (its own configured
/// address first, e.g. `http://127.0.0.1:8501`): every node's listener, and
/// the service addresses and cluster address the player is redirected to.
pub fn cluster_origins(shared: &Shared) -> Vec<String> {
    let snap = shared.snapshot();
    let web = shared.web();
    let mut origins = vec![web.url(shared.http, "")];
    let listeners = snap
        .map
        .iter()
        .flat_map(|map| map.members.iter().map(|m| m.addrs.http));
    let service = shared.service.all().map(|(_, addr)| addr);
    for addr in listeners.chain(service) {
        let o = web.url(addr, "");
        if !origins.contains(&o) {
            origins.push(o);
        }
    }
    origins
}

/// The Content-Security-Policy of the dashboard: this node and the cluster's
/// nodes (for the player's redirects and the supervisor's event stream), and
/// `blob:` media for hls.js's Media Source; nothing else.
pub fn content_security_policy(shared: &Shared) -> String {
    let nodes = cluster_origins(shared).join(" ");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {nodes}; media-src 'self' blob: {nodes}; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn asset(shared: &Shared, content_type: &'static str, body: &'static str) -> Response {
    let csp = HeaderValue::from_str(&content_security_policy(shared))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CONTENT_SECURITY_POLICY, csp),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
    ];
    (headers, body).into_response()
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    asset(&shared, "text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js(State(shared): State<Arc<Shared>>) -> Response {
    asset(&shared, "text/javascript; charset=utf-8", APP_JS)
}

async fn app_css(State(shared): State<Arc<Shared>>) -> Response {
    asset(&shared, "text/css; charset=utf-8", APP_CSS)
}

async fn hls_js(State(shared): State<Arc<Shared>>) -> Response {
    asset(&shared, "text/javascript; charset=utf-8", HLS_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets_and_no_inline_script() {
        for path in [APP_JS_PATH, APP_CSS_PATH, HLS_JS_PATH] {
            assert!(INDEX_HTML.contains(path), "{path} is referenced");
        }
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script");
        assert!(!INDEX_HTML.contains(" style=\""), "no inline style");
        for (i, _) in INDEX_HTML.match_indices(" on") {
            let attr: String = INDEX_HTML[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let after = INDEX_HTML[i + 1 + attr.len()..].chars().next();
            assert!(after != Some('='), "no inline handler ({attr})");
        }
        assert!(
            !APP_JS.contains("setInterval"),
            "the page follows events, it does not poll"
        );
        assert!(HLS_JS.len() > 100_000, "the real hls.js is vendored");
    }
}
