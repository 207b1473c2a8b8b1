//! The `[metrics]` section: the optional Prometheus endpoint.

/// `[metrics]`: the optional Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics`; None (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
}
