//! Integration tests: the real `imagelock` binary against real peers
//! (docker-registry, skopeo) and hostile in-test servers.

mod appc;
mod bundle;
mod delta;
mod everyday;
mod firsthour;
mod firsthour_edit;
mod firsthour_output;
mod harness;
mod hostile;
mod interop;
mod local;
mod mirror;
mod peers;
mod registry;
mod render;
mod signing;
mod sigstore;
mod sigstore_cli;
mod store;
mod tamper;
mod versions;
