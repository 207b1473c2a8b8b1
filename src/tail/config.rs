//! The `[[source]]` section: which conn.log files the tail follows, from where, and what kind of log each is.

use crate::zeek::SourceKind;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub path: PathBuf,
    pub start_at: StartAt,
    pub kind: SourceKind,
}
