//! The admin listener: plain HTTP on its own port, apart from the callers' gRPC port, for the
//! operators' tools. `GET /metrics` answers the Prometheus text format, or OpenMetrics when the
//! scraper's `Accept` asks for it. It keeps answering while calls drain, and stops with the
//! other background tasks.

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;

use super::tasks::Tasks;
use crate::telemetry::metrics::{Format, Metrics};

/// Serves `metrics` on `listener` until the tasks stop.
pub(super) fn spawn(listener: TcpListener, metrics: Metrics, tasks: &mut Tasks) {
    let app = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| async move { scrape(&metrics, &headers) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the admin listener serves /metrics\n",
            )
        });
    tasks.spawn_graceful("admin listener", |stop| async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%error, "the admin listener stopped");
        }
    });
}

fn scrape(metrics: &Metrics, headers: &HeaderMap) -> impl IntoResponse + use<> {
    let format = if wants_openmetrics(headers) {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    };
    (
        [(header::CONTENT_TYPE, format.content_type())],
        metrics.encode(format),
    )
}

/// Prometheus asks for `application/openmetrics-text` first (with a higher `q`) when it can
/// read it; anything else gets the classic text format.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}
