//! The commands: one function per command, each a short read top to bottom that loads
//! what it needs through a `project::Project` (images.toml, the lock, the trust policy,
//! the store), calls the pipeline's modules and reports through the
//! [`Printer`](crate::report::printer::Printer). One submodule per group of commands.

mod airgap;
mod edit;
mod lock;
mod outdated;
mod project;
mod render;
mod report;
mod store;
mod sync;
mod trust;
mod verify;

pub use airgap::{export, import, push};
pub use edit::{AddRequest, add, init, remove, schema};
pub use lock::{lock, update};
pub use outdated::outdated;
pub use render::render;
pub use report::{diff, inspect, list};
pub use store::{fsck, gc};
pub use sync::sync;
pub use trust::{KeySource, TrustAddRequest, TrustRemoval, trust_add, trust_list, trust_remove};
pub use verify::verify;
