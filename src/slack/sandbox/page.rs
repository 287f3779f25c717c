//! The sandbox page: a browser view of the emulator that looks close to
//! Slack (channels, Block Kit cards, threads, ephemeral messages, modals)
//! and acts through the emulator's own `POST /api/_act/...` routes, so a
//! click in the page reaches the app signed exactly as Slack signs it.
//!
//! Three files embedded at build time (no build step, nothing fetched from
//! elsewhere: the machine may be offline): `page/index.html`,
//! `page/page.css`, `page/page.js`. The page builds its DOM with
//! `textContent` only, and its Content-Security-Policy allows scripts and
//! styles from the emulator alone, so alert text can never run as code. The
//! page holds no secret: acts are signed server-side.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub const INDEX_HTML: &str = include_str!("page/index.html");
pub const PAGE_JS: &str = include_str!("page/page.js");
pub const PAGE_CSS: &str = include_str!("page/page.css");

/// Scripts, styles and requests from this origin only; no inline script,
/// no framing, no form posts elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /`: the mount point itself (`/sandbox/` in `ackbar serve`).
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}
