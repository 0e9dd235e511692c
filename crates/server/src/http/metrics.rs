//! `GET /metrics`: Prometheus (OpenMetrics text) figures, read from the same counters as
//! `/ws/stats` at scrape time.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::error::ApiError;
use crate::state::AppState;

#[derive(Debug)]
struct Snapshot {
    connections: i64,
    channels: i64,
    subscriptions: i64,
    publications: u64,
    deliveries: u64,
    direct_deliveries: u64,
    messages_in: u64,
    uptime_s: i64,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "signalhub_connections",
                "Open WebSocket and SSE connections",
                self.connections,
            ),
            (
                "signalhub_channels",
                "Channels with at least one subscriber",
                self.channels,
            ),
            (
                "signalhub_subscriptions",
                "Subscriptions held by connections",
                self.subscriptions,
            ),
            (
                "signalhub_uptime_seconds",
                "Seconds since the server started",
                self.uptime_s,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let counters = [
            (
                "signalhub_publications",
                "Publications sequenced on a channel",
                self.publications,
            ),
            (
                "signalhub_deliveries",
                "Publications queued to subscribers (data frames out)",
                self.deliveries,
            ),
            (
                "signalhub_direct_deliveries",
                "Deliveries written straight to idle sockets by the io_uring writer",
                self.direct_deliveries,
            ),
            (
                "signalhub_messages_in",
                "Data frames received from clients",
                self.messages_in,
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let hub = state.hub.stats();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        connections: state.registry.len() as i64,
        channels: hub.channels as i64,
        subscriptions: hub.subscriptions as i64,
        publications: hub.publications,
        deliveries: hub.deliveries,
        direct_deliveries: hub.direct_deliveries,
        messages_in: state.messages_in.load(Ordering::Relaxed),
        uptime_s: state.clock.uptime_s() as i64,
    }));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        return ApiError::internal(format!("metrics encoding failed: {e}")).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
