//! The operator web page: `GET /` and its files under `/assets/`, built
//! into the binary from `assets/web/` (no Node build step, nothing read
//! from disk at run time).
//!
//! The files hold no plant data, so they are served without a token: the
//! page asks for one and sends it with every API call (docs/api.md, "The
//! page"). Each answer carries its content type, an `ETag` (a hash of the
//! bytes, so a reload after an upgrade never shows a stale script), a
//! `Cache-Control` (revalidate our own files; keep the vendored library,
//! whose path names its version, for a year) and a Content-Security-Policy
//! that lets the page run only its own scripts and talk only to this
//! server. Not compressed: the whole page is about 90 KB (34 KB gzipped),
//! once per browser since it is cached, which does not pay for a new
//! direct dependency (docs/api.md has the figures).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The vendored uPlot's version, part of its path (assets/README.md).
pub const UPLOT_VERSION: &str = "1.6.32";

/// One file of the page.
pub struct Asset {
    /// Under `/assets/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Never changes under this path (its version is in it).
    pub immutable: bool,
}

/// The page itself, at `/`.
pub const INDEX: &[u8] = include_bytes!("../../assets/web/index.html");

/// Every file under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/web/app.js"),
        immutable: false,
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/web/app.css"),
        immutable: false,
    },
    Asset {
        path: "vendor/uplot-1.6.32/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/web/vendor/uplot/uPlot.iife.min.js"),
        immutable: true,
    },
    Asset {
        path: "vendor/uplot-1.6.32/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/web/vendor/uplot/uPlot.min.css"),
        immutable: true,
    },
    Asset {
        path: "vendor/uplot-1.6.32/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../assets/web/vendor/uplot/LICENSE"),
        immutable: true,
    },
];

/// The page's policy: its own scripts only (no inline script, no eval),
/// its own server only for data, and no framing (clickjacking of the
/// approve button). Inline styles are allowed: uPlot sizes its elements
/// with them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A strong validator of `body`: FNV-1a 64 of its bytes, quoted.
fn etag_of(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// Each file's ETag, hashed once: index first, then [`ASSETS`] in order.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        std::iter::once(INDEX)
            .chain(ASSETS.iter().map(|a| a.body))
            .map(etag_of)
            .collect()
    })
}

/// The sum of the page's bytes as served (index, scripts, styles; not the
/// licence), for the docs' figure and its test.
pub fn page_bytes() -> usize {
    INDEX.len()
        + ASSETS
            .iter()
            .filter(|a| !a.path.ends_with("LICENSE"))
            .map(|a| a.body.len())
            .sum::<usize>()
}

fn serve(
    headers: &HeaderMap,
    body: &'static [u8],
    content_type: &'static str,
    etag: &str,
    cache: &'static str,
) -> Response {
    let mut r = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    let etag = etags().first().map_or("", String::as_str);
    let mut r = serve(
        &headers,
        INDEX,
        "text/html; charset=utf-8",
        etag,
        "no-cache",
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

/// `GET /assets/{path}`.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some((i, a)) = ASSETS.iter().enumerate().find(|(_, a)| a.path == path) else {
        return super::api::not_found().await;
    };
    let etag = etags().get(i + 1).map_or("", String::as_str);
    let cache = if a.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    serve(&headers, a.body, a.content_type, etag, cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_every_asset_it_ships() {
        let index = std::str::from_utf8(INDEX).expect("the page is UTF-8");
        for a in ASSETS.iter().filter(|a| !a.path.ends_with("LICENSE")) {
            assert!(
                index.contains(&format!("/assets/{}", a.path)),
                "index.html does not load /assets/{}",
                a.path
            );
        }
        assert!(
            ASSETS.iter().any(|a| a.path.contains(UPLOT_VERSION)),
            "the vendored path names the version"
        );
        let readme = include_str!("../../assets/README.md");
        assert!(
            readme.contains(&format!("uPlot {UPLOT_VERSION}")),
            "{readme}"
        );
        // No inline script: the policy forbids it, and the page would break.
        assert!(!index.contains("<script>"), "inline script in index.html");
        for handler in ["onclick=", "onload=", "onsubmit=", "onchange="] {
            assert!(
                !index.contains(handler),
                "an inline {handler} in index.html"
            );
        }
    }

    /// The page must stay light for a plant-floor PC (docs/api.md has the
    /// figures): a budget, so that growth is a decision.
    #[test]
    fn the_page_stays_under_its_weight_budget() {
        let bytes = page_bytes();
        assert!(bytes > 50_000, "uPlot alone is 51 KB: {bytes}");
        assert!(bytes < 128 * 1024, "the page is {bytes} bytes");
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert_eq!(etag_of(b"a"), etag_of(b"a"));
        assert_eq!(etags().len(), ASSETS.len() + 1);
    }
}
