//! wharf's integration tests: each drives the real `wharf` binary over loopback, with
//! real peers where a scenario has one. Helpers are in `util`.

mod access;
mod bad_input;
mod cli;
mod clients;
mod cluster;
mod conformance;
mod crash;
mod gc;
mod hostile;
mod hostile_sources;
mod import;
mod management;
mod migrate;
mod network;
mod oci_api;
mod powerfs;
mod powerloss;
mod serve;
mod shape;
mod tidy;
mod tls;
mod upgrade;
mod util;
mod wire;
