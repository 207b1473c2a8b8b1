//! longconn
pub mod checkpoint;
pub mod config;
pub mod input;
pub mod output;
pub mod scan;
pub mod signal;
pub mod tail;
pub mod zeek;
