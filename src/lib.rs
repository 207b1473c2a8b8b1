//! longconn
pub mod alert;
pub mod config;
pub mod detector;
#[cfg(test)]
mod fixtures;
pub mod rules;
pub mod window;
pub mod zeek;
