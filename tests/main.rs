//! The integration tests, one module per file, linked into one test binary: one link of the whole
//! dependency graph instead of one per file keeps a cold `cargo test --release` within minutes.
//! Run one file's tests with a filter, e.g. `cargo test --release --test integration torture::`.

mod support;

mod alert_quality;
mod allow_files;
mod check_preflight;
mod checkpoint_binary;
mod context_daemon;
mod daemon;
mod daemon_inproc;
mod daemon_spool;
mod daemon_stop;
mod faults_disk;
mod faults_spool;
mod fuzz_regressions;
mod http_daemon;
mod http_outputs;
mod interim_run;
mod metrics;
mod reload;
mod replay_parallel;
mod replay_tuning;
mod scan_damaged;
mod scan_parity;
mod sd_notify;
mod several_loggers;
mod syslog_rsyslog;
mod systemd_unit;
mod torture;
