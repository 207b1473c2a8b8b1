//! longconn
pub mod zeek;
