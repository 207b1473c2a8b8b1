//! longconn
pub mod config;
pub mod zeek;
pub mod tail;
