//! The daemon's configuration: TOML in, a typed and validated [`Config`] out.
//!
//! This module is only the loader. Each stage defines its own section next to its code, with the typed
//! form, how it is read and how it is printed back: `[[source]]` in [`crate::tail::config`], `[state]` in
//! [`crate::checkpoint::config`], `[metrics]` in [`crate::metrics::config`], `[window]` in
//! [`crate::window::config`], `[single]`, `[cumulative]`, `[filter]`, `[[allow]]` and `[[override]]` in
//! [`crate::rules::config`], `[[output]]` (a tagged enum by `type`) in [`crate::output::config`] with
//! syslog's keys in [`crate::output::syslog::config`] and HTTP's in [`crate::output::http::config`], and
//! `[spool]` in [`crate::spool::config`]. What they share is here: [`diag`], the collector of every
//! problem with its dotted key (`source[0].path`, `output[2].facility`) and the [`diag::Reader`] each
//! section is read with, and [`values`], the value parsers (durations, CIDRs, addresses, enum names).
//!
//! Loading parses the text as TOML, then reads each section from the tree: a reader takes typed values
//! by key, reports each value of the wrong TOML type and reads it as absent, and at the end of a table
//! reports every key nobody asked for as unknown. Then the values are parsed and the cross-field rules
//! checked (levels strictly increasing, at least one source, ...). A user sees every mistake in one go:
//! all problems land in one [`ConfigErrors`], in this order (the order the loader always had, so reports
//! did not change when the sections moved to their stages):
//! 1. each `type = "http"` output's own problems, output by output, in the order that output checks them;
//! 2. unknown keys and values of the wrong type, in file order;
//! 3. the value checks, section by section in the order of [`Config`]'s fields, within a section in the
//!    order of its keys, table by table for arrays (for `[[output]]`: every `name` first, then each
//!    output).
//!
//! An array of tables with an element that is not a table (`source = [1, { path = "/a" }]`) is refused
//! whole: the keys and types of its tables are still checked (2), their values are not.
//! A missing required key is not reported when a problem in 1 or 2, or an earlier one in 3, concerns it
//! or a key below it (a value dropped for its type, a misspelt key), so one mistake gives one error.
//! Defaults are what a SOC wants out of the box; `config/longconn.toml` lists each with its reason.
//! Downstream code uses these types and never re-checks them; [`Config::to_effective_toml`] prints the
//! effective configuration (`longconn check`).

pub mod diag;
pub mod preflight;
pub mod values;

pub use crate::checkpoint::config::StateConfig;
use crate::detector::context::ContextConfig;
use crate::detector::DetectorConfig;
pub use crate::metrics::config::MetricsConfig;
pub use crate::output::config::{Batching, FsyncPolicy, Output, DEFAULT_BATCHING};
pub use crate::output::syslog::config::{
    Framing, SyslogConfig, SyslogTransport, TlsConfig, FACILITIES,
};
use crate::rules::config::RulesConfig;
use crate::rules::{Allow, CumulativeConfig, FilterConfig, Levels, Override};
pub use crate::spool::config::SpoolConfig;
pub use crate::tail::config::{Source, StartAt};
use crate::window::WindowConfig;
pub use diag::{ConfigError, ConfigErrors};
use diag::{Diagnostics, Reader};
pub use values::{format_duration, parse_duration};

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sensor_name: String,
    pub sources: Vec<Source>,
    pub state: StateConfig,
    pub metrics: MetricsConfig,
    pub window: WindowConfig,
    pub single: Levels,
    pub cumulative: CumulativeConfig,
    pub filter: FilterConfig,
    pub allow: Vec<Allow>,
    /// The entries of the allow lists `filter.allow_files` names, put here by
    /// [`preflight::read_allow_files`] (at `run`, each reload, `replay` and `check`); always empty after
    /// loading, which reads no file but the config.
    pub allow_listed: Vec<Allow>,
    pub overrides: Vec<Override>,
    pub outputs: Vec<Output>,
    pub spool: SpoolConfig,
    /// `[context]`: the context joins' bound and the level modifiers.
    pub context: ContextConfig,
}

impl Config {
    /// What the detector reads: the window, the rules, the sensor name and the kinds of the sources.
    pub fn detector(&self) -> DetectorConfig {
        DetectorConfig {
            sensor_name: self.sensor_name.clone(),
            window: self.window.clone(),
            single: self.single.clone(),
            cumulative: self.cumulative.clone(),
            filter: self.filter.clone(),
            allow: self
                .allow
                .iter()
                .chain(&self.allow_listed)
                .cloned()
                .collect(),
            overrides: self.overrides.clone(),
            source_kinds: self.sources.iter().map(|s| s.kind).collect(),
            context: self.context.clone(),
        }
    }
}

/// Where `run` and `check` look for the config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/longconn/longconn.toml";

/// The host name, for `sensor.name`; "longconn" if it cannot be read.
pub fn host_name() -> String {
    // uname(2)'s nodename is what gethostname(3) returns on Linux.
    let uname = rustix::system::uname();
    if let Ok(name) = uname.nodename().to_str() {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
    }
    "longconn".to_string()
}

/// `[sensor]`: the name alerts carry, the host name by default.
fn sensor_name(r: &mut Reader<'_, '_>) -> String {
    match r.section("sensor", |s| s.str("name")).flatten() {
        Some(name) if name.trim().is_empty() => {
            r.diag()
                .push("sensor.name", "is empty; leave it out to use the host name");
            String::new()
        }
        Some(name) => name.to_string(),
        None => host_name(),
    }
}

/// The text of the config file at `path`; a file that cannot be read is one error keyed by the path.
fn read(path: &std::path::Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        errors: vec![ConfigError::new(
            &path.display().to_string(),
            format!("cannot read: {e}"),
        )],
    })
}

/// Joins a multi-line message into one line, so that each error prints as one `KEY: REASON` line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "line L, column C" of a byte offset in `text`, 1-based.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Config {
    /// Reads and validates the config file at `path`. A file that cannot be read is one error keyed by
    /// the path.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        Config::from_toml_str(&read(path)?)
    }

    /// [`Config::load`] for `replay`, which reads no source: a config without `[[source]]` is accepted
    /// (that one error, and no other, is dropped).
    pub fn load_without_sources(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        Config::from_toml_str_without_sources(&read(path)?)
    }

    /// [`Config::from_toml_str`] without the requirement of a `[[source]]`.
    pub fn from_toml_str_without_sources(text: &str) -> Result<Config, ConfigErrors> {
        let (config, mut errors, _) = Config::convert_text(text)?;
        errors.retain(|e| !(e.key == "source" && e.reason.starts_with("no [[source]]")));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors { errors })
        }
    }

    /// Parses and validates a config, reporting every problem at once.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let (config, errors, _) = Config::convert_text(text)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors { errors })
        }
    }

    /// The config as far as it converts, with every error found, and where each source and output came
    /// from; Err only when there is nothing to convert (a TOML syntax error). The preflight checks what
    /// converted, so that its problems come with the file's in one report.
    fn convert_text(
        text: &str,
    ) -> Result<(Config, Vec<ConfigError>, preflight::Origins), ConfigErrors> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let reason = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!(
                        "TOML syntax error at line {line}, column {col}: {}",
                        one_line(e.message())
                    )
                }
                None => format!("TOML syntax error: {}", one_line(e.message())),
            };
            ConfigErrors {
                errors: vec![ConfigError::new("", reason)],
            }
        })?;
        let mut diag = Diagnostics::new();
        let mut r = Reader::root(&mut diag, &table);
        let sensor_name = sensor_name(&mut r);
        let (sources, source_origins) = Source::from_toml(&mut r);
        let state = StateConfig::from_toml(&mut r);
        let metrics = MetricsConfig::from_toml(&mut r);
        let window = WindowConfig::from_toml(&mut r);
        let rules = RulesConfig::from_toml(&mut r);
        let outputs = Output::from_toml(&mut r);
        let spool = SpoolConfig::from_toml(&mut r);
        let context = ContextConfig::from_toml(&mut r);
        r.finish();
        let origins = preflight::Origins {
            sources: source_origins,
            outputs: outputs.origins,
            unbuilt_http: outputs.unbuilt_http,
        };
        let config = Config {
            sensor_name,
            sources,
            state,
            metrics,
            window,
            single: rules.single,
            cumulative: rules.cumulative,
            filter: rules.filter,
            allow: rules.allow,
            allow_listed: Vec::new(),
            overrides: rules.overrides,
            outputs: outputs.outputs,
            spool,
            context,
        };
        Ok((config, diag.finish(), origins))
    }

    /// The effective config, every default filled in, as TOML with the file's key names; it loads back
    /// into an equal `Config`.
    pub fn to_effective_toml(&self) -> String {
        let mut t = toml::Table::new();
        let mut sensor = toml::Table::new();
        sensor.insert("name".into(), self.sensor_name.clone().into());
        t.insert("sensor".into(), sensor.into());
        if !self.sources.is_empty() {
            let list: Vec<toml::Value> = self.sources.iter().map(|s| s.to_toml().into()).collect();
            t.insert("source".into(), list.into());
        }
        t.insert("state".into(), self.state.to_toml().into());
        if let Some(m) = self.metrics.to_toml() {
            t.insert("metrics".into(), m.into());
        }
        t.insert("window".into(), self.window.to_toml().into());
        let rules = RulesConfig {
            single: self.single.clone(),
            cumulative: self.cumulative.clone(),
            filter: self.filter.clone(),
            allow: self.allow.clone(),
            overrides: self.overrides.clone(),
        };
        rules.to_toml(&mut t);
        if !self.outputs.is_empty() {
            let list: Vec<toml::Value> = self.outputs.iter().map(|o| o.to_toml().into()).collect();
            t.insert("output".into(), list.into());
        }
        t.insert("spool".into(), self.spool.to_toml().into());
        t.insert("context".into(), self.context.to_toml().into());
        match toml::to_string(&t) {
            Ok(text) => {
                format!("# longconn effective configuration (defaults filled in)\n\n{text}")
            }
            Err(e) => format!("# cannot print the effective configuration: {e}\n"),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
