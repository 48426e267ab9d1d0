//! Integration tests: the real `imagelock` binary against real peers
//! (docker-registry, skopeo) and hostile in-test servers.

mod appc;
mod harness;
mod hostile;
mod local;
mod peers;
mod registry;
mod render;
mod signing;
