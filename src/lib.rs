//! longconn
pub mod config;
pub mod zeek;
