//! Test support shared by the integration tests.
pub mod faults;
pub mod receiver;
pub mod tinyproxy;
pub mod zeek;
