//! longconn
pub mod config;
pub mod input;
pub mod scan;
pub mod zeek;
