//! One control plane per test binary, one namespace per test.
//!
//! [`shared_env`] starts the control plane on first use (on its own thread
//! and runtime, so any test's runtime may ask) and keeps it in a `static`.
//! Statics are never dropped, but the components still stop when the test
//! binary exits, however it exits: see [`crate::process`].
//!
//! [`TestNamespace`] gives each test its own namespace and a client made in
//! the test's own runtime (a `kube::Client` must not outlive the runtime it
//! was made in).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;

use crate::env::{EnvError, TestEnv, TestEnvBuilder};

static PLAIN: OnceLock<Result<TestEnv, String>> = OnceLock::new();
static WITH_KWOK: OnceLock<Result<TestEnv, String>> = OnceLock::new();

/// The control plane of this test binary: etcd, kube-apiserver and
/// kube-controller-manager. Started on first call.
///
/// # Panics
/// If it cannot start (the message says why, e.g. that the binaries must be
/// built with `tests/control-plane build`).
pub fn shared_env() -> &'static TestEnv {
    shared(&PLAIN, TestEnv::builder())
}

/// Like [`shared_env`], plus kube-scheduler, kwok and a fake Node, so pods
/// become Running.
///
/// # Panics
/// As [`shared_env`].
pub fn shared_env_with_kwok() -> &'static TestEnv {
    shared(&WITH_KWOK, TestEnv::builder().kwok(true))
}

fn shared(cell: &'static OnceLock<Result<TestEnv, String>>, builder: TestEnvBuilder) -> &'static TestEnv {
    let env = cell.get_or_init(|| start_on_own_thread(builder).map_err(|e| e.to_string()));
    match env {
        Ok(env) => env,
        Err(message) => panic!("the test control plane did not start: {message}"),
    }
}

/// Starts the env on a fresh thread with its own runtime: callable from a
/// test's runtime without blocking it in async code, and the env does not
/// depend on the runtime that started it.
fn start_on_own_thread(builder: TestEnvBuilder) -> Result<TestEnv, EnvError> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the control plane's start");
        runtime.block_on(builder.start())
    })
    .join()
    .expect("the control plane's start thread panicked")
}

/// A namespace of its own for one test, on a shared control plane.
#[derive(Debug)]
pub struct TestNamespace {
    env: &'static TestEnv,
    name: String,
}

impl TestNamespace {
    /// Creates a namespace named after `prefix` on [`shared_env`].
    ///
    /// # Panics
    /// If the control plane does not start or the namespace cannot be created.
    pub async fn create(prefix: &str) -> Self {
        Self::create_in(shared_env(), prefix).await
    }

    /// Creates a namespace named after `prefix` on the given env.
    ///
    /// # Panics
    /// If the namespace cannot be created.
    pub async fn create_in(env: &'static TestEnv, prefix: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{n}-{}", sanitize(prefix), std::process::id());
        let namespaces: Api<Namespace> = Api::all(env.client());
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.clone());
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create the test namespace {name}: {e}"));
        Self { env, name }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control plane it lives on.
    pub fn env(&self) -> &'static TestEnv {
        self.env
    }

    /// A fresh admin client, bound to the calling test's runtime.
    pub fn client(&self) -> kube::Client {
        self.env.client()
    }

    /// An `Api` for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.name)
    }
}

/// A DNS-label-safe form of a test name, short enough to leave room for the suffix.
fn sanitize(prefix: &str) -> String {
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(40);
    let name = name.trim_matches('-');
    if name.is_empty() { "test".into() } else { name.into() }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn namespace_prefixes_are_dns_labels() {
        assert_eq!(sanitize("GC_of_children"), "gc-of-children");
        assert_eq!(sanitize("__"), "test");
        assert_eq!(sanitize(&"x".repeat(80)).len(), 40);
    }
}
