//! longconn finds long-lived connections in Zeek's conn.log: `scan` is a one-shot report over archives, `run`
//! a daemon that follows the live logs and raises alerts, `replay` the daemon's detector over archives.
//!
//! The pipeline (`run`), one direction, on one blocking thread up to the spool:
//!
//! ```text
//! signals ──control──▶ daemon (wiring: starts, reloads, drains, checkpoints)
//!
//! conn.log ─▶ tail ─▶ zeek parser ─ConnRecord─▶ detector ─Alert─▶ spool ─▶ delivery ─▶ outputs
//! (files,     (one reader per  (header state    (window +          (durable,  (a task per  (stdout, file,
//!  rotations)  file identity)   per file)        rules)              bounded)   output)      syslog, HTTP)
//! archives ─▶ input ─┘                     └──▶ scan::tally (the one-shot report)
//! ```
//!
//! The spool is the only queue: when it is full the pipeline stops reading (the log files are the buffer).
//! The core (`zeek`, `window`, `rules`, `alert`, `detector`, `scan::tally`) is pure: it reads no clock, does
//! no I/O and takes time only from the records; files, sockets, threads and clocks live at the edges. It owns
//! its types and takes its own [`detector::DetectorConfig`]; `config` depends on the core, never the reverse:
//! the core's sections (`window::config`, `rules::config`) are read with `config::diag` and `config::values`
//! only, which import nothing else of the crate.
//! An alert is in the spool (fsynced) before the checkpoint covering its records is saved.
//!
//! Module map:
//!
//! | module | what it is |
//! |---|---|
//! | [`zeek`] | `ConnRecord` and the header-driven TSV and JSON parsers; [`zeek::transport`], the protocol codes; [`zeek::SkippedLines`], the first 20 skipped lines per file shown |
//! | [`input`] | opening a file or stdin for `scan` and `replay`, gzip by magic bytes |
//! | [`scan`] | the one-shot report: parallel reader, fast paths, tally, table/TSV/JSON output |
//! | [`window`] | the per-group sliding window on event time |
//! | [`rules`] | filters, overrides, levels, suppression, cumulative episodes |
//! | [`detector`] | window + rules: records in, alerts out; snapshot and restore; [`detector::interim`], the uid bookkeeping of open_conn/conn_long records |
//! | [`alert`] | the alert document: the one place the JSON wire format is defined, built and read back |
//! | [`replay`] | the detector over archives |
//! | [`config`] | the loader: TOML -> typed `Config`, every error at once; [`config::diag`], the diagnostics and the section reader; [`config::values`], the value parsers; `config::preflight`, the checks on the machine. Each stage reads its own section in its `config` submodule (`tail::config`, `window::config`, `rules::config`, `output::config`, ...) |
//! | [`tail`] | following one source through rotations (file identity, checkpoints of positions) |
//! | [`checkpoint`] | the atomic, checksummed checkpoint file |
//! | [`spool`] | the durable, bounded alert queue with one cursor per output; its record type `Spooled` |
//! | [`output`] | the `Deliver` contract; [`output::delivery`], one task per output (batches, retries, cursors); stdout, file, syslog and [`output::http`] (ndjson, Splunk HEC, Elasticsearch) outputs; TLS material |
//! | [`daemon`] | wiring: the pipeline thread, spool, delivery tasks, signals, checkpoint cadence; `daemon::health` |
//! | [`signal`] | SIGHUP = reload, SIGTERM/SIGINT = stop |
//! | [`notify`] | the systemd notification protocol |
//! | [`metrics`] | metric names and handles, the Prometheus endpoint |
pub mod alert;
pub mod checkpoint;
pub mod config;
pub mod daemon;
pub mod detector;
mod index;
pub mod input;
pub mod metrics;
pub mod notify;
pub mod output;
mod prefetch;
pub mod replay;
pub mod rules;
pub mod scan;
pub mod signal;
pub mod spool;
pub mod tail;
pub mod window;
pub mod zeek;
