//! The live dashboard at `GET /`: the page and its two assets, built by `npm run build` in
//! `web/` into `web/dist/` (committed) and embedded here, so nothing is read at run time.
//!
//! `index.html` names the assets with a content hash in the query (`app.js?v=...`), so the
//! page is revalidated on every load (`no-cache`) while the assets may be cached for good.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX_HTML: &str = include_str!("../../../../web/dist/index.html");
const APP_JS: &str = include_str!("../../../../web/dist/app.js");
const APP_CSS: &str = include_str!("../../../../web/dist/app.css");

/// The page may change with every build: always revalidate.
const PAGE_CACHE: &str = "no-cache";
/// The assets are addressed by content hash from the page.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// `GET /`: the dashboard page.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, PAGE_CACHE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX_HTML,
    )
}

/// `GET /assets/app.js`: the bundled script.
pub async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        APP_JS,
    )
}

/// `GET /assets/app.css`: the stylesheet.
pub async fn app_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, ASSET_CACHE),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        APP_CSS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_its_assets() {
        assert!(INDEX_HTML.contains("/assets/app.js"));
        assert!(INDEX_HTML.contains("/assets/app.css"));
        assert!(!APP_JS.is_empty());
        assert!(!APP_CSS.is_empty());
    }
}
