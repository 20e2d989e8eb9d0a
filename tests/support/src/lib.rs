//! `trellis-testenv`: a real Kubernetes control plane for Trellis tests.
//!
//! The binaries come from `tests/control-plane build` (etcd, kube-apiserver,
//! kube-controller-manager, optionally kwok, built from the Go module proxy
//! into a versioned cache, see [`assets`]). [`TestEnv`] starts them on free
//! loopback ports with generated certificates and an admin kubeconfig, the
//! way controller-runtime's envtest does.
//!
//! Tests usually share one control plane per test binary and take a fresh
//! namespace each, so they run in parallel:
//!
//! ```no_run
//! # async fn example() {
//! let ns = trellis_testenv::TestNamespace::create("gc").await;
//! let client = ns.client(); // an admin client made in this test's runtime
//! # }
//! ```

pub mod assets;
pub mod certs;
pub mod cosign;
mod env;
pub mod kwok;
pub mod process;
pub mod proxy;
pub mod registry;
mod shared;
pub mod wait;

pub use assets::{Assets, AssetsError, KUBERNETES_VERSION};
pub use env::{EnvError, KEEP_ENV, TestEnv, TestEnvBuilder};
pub use shared::{TestNamespace, shared_env, shared_env_with_kwok};
