//! The `[metrics]` section: the optional Prometheus endpoint.

use crate::config::diag::Reader;
use crate::config::values::parse_listen;

/// `[metrics]`: the optional Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics`; None (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
}

impl MetricsConfig {
    /// Reads `[metrics]` from the file's top level.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> MetricsConfig {
        let listen = r
            .section("metrics", |m| {
                let listen = m.str("listen")?;
                m.parse("listen", parse_listen(listen))
            })
            .flatten();
        MetricsConfig { listen }
    }

    /// `[metrics]` as `to_effective_toml` prints it; None when it is off.
    pub fn to_toml(&self) -> Option<toml::Table> {
        let listen = self.listen?;
        let mut t = toml::Table::new();
        t.insert("listen".into(), listen.to_string().into());
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use crate::config::Config;

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        assert_eq!(load(MINIMAL).metrics.listen, None);
        let c = load(&format!(
            "{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9787\"\n"
        ));
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9787".parse().unwrap()));
        let back = Config::from_toml_str(&c.to_effective_toml()).unwrap();
        assert_eq!(back, c);
        let c = load(&format!("{MINIMAL}[metrics]\nlisten = \"[::1]:9787\"\n"));
        assert_eq!(c.metrics.listen, Some("[::1]:9787".parse().unwrap()));
        for bad in ["localhost:9787", "127.0.0.1", "", "127.0.0.1:99999"] {
            let e = errors(&format!(
                "{MINIMAL}[metrics]\nlisten = \"{bad}\"\n[window]\nlength = \"x\"\n"
            ));
            assert!(e.has_key("metrics.listen"), "{bad}: {e}");
            assert!(e.has_key("window.length"), "every error at once: {e}");
        }
        let e = errors(&format!("{MINIMAL}[metrics]\nlisten = 9787\nport = 1\n"));
        assert!(
            e.has_key("metrics.listen") && e.has_key("metrics.port"),
            "{e}"
        );
    }
}
