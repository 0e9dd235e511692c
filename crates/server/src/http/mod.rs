//! The HTTP API: routes, the error type, bodies and API keys.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests can drive it
//! without a socket; the accept loop in `server` serves it.

mod admin;
pub mod body;
mod channels;
pub mod cursor;
mod dashboard;
pub mod error;
pub mod identity;
pub mod keys;
mod metrics;
mod poll;
mod publish;
pub mod signals;
mod sse;
mod stats;
mod stream;
mod wallet;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;

use signalhub_schema::typed;

use crate::state::AppState;
use crate::ws::handshake::{self, Route};
use error::ApiError;

fn ws(route: Route) -> MethodRouter<AppState> {
    get(
        move |state: State<AppState>,
              peer: ConnectInfo<SocketAddr>,
              path: Option<Path<String>>,
              query: Query<HashMap<String, String>>,
              request: Request| {
            handshake::upgrade(state, peer, path, query, route.clone(), request)
        },
    )
}

/// While shutting down, everything but liveness and readiness answers 503 (readiness says
/// `unavailable` itself, in its own shape).
async fn refuse_while_stopping(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if state.is_stopping() && path != "/health" && path != "/ws/health" {
        return ApiError::unavailable("server is shutting down").into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/app.js", get(dashboard::app_js))
        .route("/assets/app.css", get(dashboard::app_css))
        .route("/ws", ws(Route::Plain))
        .route("/ws/signals", ws(Route::Fixed(&["signals"])))
        .route("/ws/notifications", ws(Route::Fixed(&["signals"])))
        .route("/ws/unified", ws(Route::Fixed(&["unified"])))
        .route("/ws/narrative", ws(Route::Fixed(&["narrative"])))
        .route("/ws/market/{symbol}", ws(Route::Market))
        .route("/ws/agents/{name}", ws(Route::Agent))
        .route("/ws/bots/{bot_id}", ws(Route::Bot))
        .route("/ws/trade-execution", ws(Route::TradeExecution))
        .route("/ws/stats", get(stats::stats))
        .route("/ws/health", get(stats::ready))
        .route("/health", get(stats::health))
        .route("/api/v1/feeds", get(stats::feeds))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/publish", post(publish::publish))
        .route("/api/v1/broadcast", post(publish::broadcast))
        .route("/api/v1/signals", post(signals::post).get(signals::list))
        .route("/api/v1/external-signals/sync/signal", post(signals::post))
        .route(
            "/api/v1/alerts",
            publish::typed("alerts", typed::parse_alert),
        )
        .route(
            "/api/v1/market-data",
            publish::typed("market-data", typed::parse_market_data),
        )
        .route(
            "/api/v1/agent-insights",
            publish::typed("agent-insights", typed::parse_agent_insight),
        )
        .route(
            "/api/v1/narratives",
            publish::typed("narratives", typed::parse_narrative),
        )
        .route("/api/v1/channels/{channel}", get(channels::info))
        .route("/api/v1/channels/{channel}/history", get(channels::history))
        .route("/api/v1/auth/nonce", get(wallet::nonce))
        .route("/api/v1/auth/wallet", post(wallet::sign_in))
        .route("/api/v1/auth/token", post(admin::mint_token))
        .route("/api/v1/users/{user}/tier", post(admin::set_tier))
        .route("/api/v1/users/{user}/disconnect", post(admin::disconnect))
        .route(
            "/api/v1/trades/{trade_id}/events",
            post(publish::trade_event),
        )
        .route("/sse", get(sse::sse))
        .route("/api/v1/poll", get(poll::poll))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_while_stopping,
        ))
        .with_state(state)
}
