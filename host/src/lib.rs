//! Trellis: a Kubernetes operator host whose reconcile decisions are made by
//! sandboxed WebAssembly plugins.
//!
//! - [`runtime`]: loads plugins and runs each call in a fresh sandbox.
//! - [`render`]: runs a plugin offline on files (`trellis render`).
//! - [`pack`]: a module as ConfigMap + `ReconcilerPlugin` YAML (`trellis plugin pack`).
//! - [`precompile`]: modules compiled into a module cache ahead of time (`trellis plugin compile`).
//! - [`status`]: the status the host writes on parents.
//! - [`host`]: the main loop of `trellis run` (registry, controllers, leader election).
//! - [`controller`]: one controller per registered parent kind.
//! - [`registry`]: which plugin serves which kind (plugins folder, `ReconcilerPlugin`s).
//! - [`admission`]: validating and mutating webhooks answered by plugins.
//! - [`shard`]: parents shared among replicas by shard Leases.
//! - [`cli`]: the command line.

pub mod admission;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod host;
pub mod leader;
pub mod leadership;
pub mod memory;
pub mod metrics;
pub mod oci;
pub mod pack;
pub mod precompile;
pub mod registry;
pub mod render;
pub mod run;
pub mod runtime;
pub mod scaffold;
pub mod scenario;
pub mod server;
pub mod shard;
pub mod status;
#[doc(hidden)]
pub mod testing;
