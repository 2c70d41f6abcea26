//! The `/metrics` endpoint: the daemon's own metrics (the disk gauges read at each scrape), then
//! the series derived from what tenants send (their names never clash).

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;

use super::Catalog;
use super::series::SeriesStore;

/// The router of the metrics listener.
pub fn router(catalog: Catalog, series: Arc<SeriesStore>, data_dir: PathBuf) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let catalog = catalog.clone();
            let series = series.clone();
            let data_dir = data_dir.clone();
            async move {
                catalog.read_disk(&data_dir);
                let mut text = catalog.render();
                text.push_str(&series.render(std::time::Instant::now()));
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    )
}
