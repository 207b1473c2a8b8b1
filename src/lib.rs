//! longconn
pub mod config;
pub mod tail;
pub mod zeek;
