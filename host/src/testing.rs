//! Helpers for tests and benchmarks: where the workspace's plugin modules
//! are built.

use std::path::PathBuf;

/// The built `.wasm` of a plugin crate of this workspace, e.g.
/// `trellis-plugin-msdeploy`. Panics with the command to run when it has not
/// been built (`make plugins` builds them all).
pub fn guest_module(crate_name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first with `make plugins` (cargo build --release --target wasm32-wasip2 -p {crate_name})",
        path.display()
    );
    path
}

/// The bytes of [`guest_module`].
pub fn guest_bytes(crate_name: &str) -> Vec<u8> {
    let path = guest_module(crate_name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
