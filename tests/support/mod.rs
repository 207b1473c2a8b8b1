//! Test support shared by the integration tests, in one module: a temp sensor and its daemon (`sensor`),
//! in-process runs of the daemon (`inproc`), fault injection (`faults`), receivers for the network outputs
//! (`receiver`, `tinyproxy`) and Zeek itself (`zeek`).
#![allow(dead_code)]
pub mod faults;
pub mod inproc;
pub mod receiver;
pub mod sensor;
pub mod tinyproxy;
pub mod zeek;
