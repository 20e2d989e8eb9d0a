//! Whether a module fits the host, read from its bytes before it is
//! compiled: a component (not a core module) whose imports the host links
//! and that exports the functions of one `trellis:reconciler` world.
//!
//! Compiling an interpreter-based component (Python, JavaScript) takes tens
//! of seconds, and wasmtime's link error names only the first mismatch; so
//! the top-level imports and exports are read here with `wasmparser`, and
//! every import the host does not provide and every missing export is named
//! at once.

use super::error::RuntimeError;
use wasmparser::{ComponentTypeRef, Encoding, Parser, Payload};

/// Interfaces the host links, by package prefix: the Trellis host functions
/// of every version it supports and the WASI 0.2 interfaces wasmtime-wasi
/// provides (an empty sandbox: no files, sockets or environment).
const PROVIDED: &[&str] = &[
    "trellis:reconciler/host@0.1.",
    "trellis:reconciler/host@0.2.",
    // Interfaces of types only: nothing to link.
    "trellis:reconciler/types@0.1.",
    "trellis:reconciler/types@0.2.",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// The exports of the `reconciler` world of 0.2.0 and of 0.1.0.
const EXPORTS_0_2: &[&str] = &["info", "related", "reconcile", "validate", "default", "default-related"];
const EXPORTS_0_1: &[&str] = &["info", "reconcile", "validate"];

/// Why a module does not fit, every cause at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Misfit {
    /// Imports the host does not provide, e.g. `wasi:http/types@0.2.3`.
    pub unknown_imports: Vec<String>,
    /// Exports of the world the module lacks.
    pub missing_exports: Vec<String>,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.unknown_imports.is_empty() {
            let mut part = format!(
                "it imports {} that the host does not provide",
                self.unknown_imports.join(", ")
            );
            if self.unknown_imports.iter().any(|i| i.starts_with("wasi:http/")) {
                part.push_str(" (componentize-js: build with `--disable http fetch-event`, as trellis-js build does)");
            }
            parts.push(part);
        }
        if !self.missing_exports.is_empty() {
            parts.push(format!(
                "it does not export {} of the trellis:reconciler world",
                self.missing_exports.join(", ")
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Checks `bytes` before they are compiled. `module` names it in errors.
pub fn check(module: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    let misfit = misfit(bytes).map_err(|reason| RuntimeError::Compile {
        module: module.to_owned(),
        reason,
    })?;
    match misfit {
        None => Ok(()),
        Some(misfit) => Err(RuntimeError::DoesNotFit {
            module: module.to_owned(),
            misfit,
        }),
    }
}

/// What does not fit, if anything; `Err` when the bytes are no component.
fn misfit(bytes: &[u8]) -> Result<Option<Misfit>, String> {
    let (imports, exports) = top_level_names(bytes)?;
    let unknown_imports: Vec<String> = imports
        .into_iter()
        .filter(|name| !PROVIDED.iter().any(|p| name.starts_with(p)))
        .collect();
    let has = |name: &&str| exports.iter().any(|e| e == name);
    let missing =
        |world: &[&'static str]| -> Vec<String> { world.iter().filter(|n| !has(n)).map(|n| (*n).to_owned()).collect() };
    // A module is judged against 0.1.0 only if it has all of 0.1.0's
    // exports and none of those 0.2.0 added.
    let newer_only = ["related", "default", "default-related"];
    let missing_exports = if missing(EXPORTS_0_1).is_empty() && !newer_only.iter().any(has) {
        Vec::new()
    } else {
        missing(EXPORTS_0_2)
    };
    Ok(
        (!unknown_imports.is_empty() || !missing_exports.is_empty()).then_some(Misfit {
            unknown_imports,
            missing_exports,
        }),
    )
}

/// The names of the component's own (top-level) imports and exports.
fn top_level_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } if depth == 0 => {
                return Err("it is a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)".into());
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    let import = import.map_err(|e| e.to_string())?;
                    // Type imports (a world's `use`d types) need nothing linked.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_owned());
                    }
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).expect("valid WAT")
    }

    #[test]
    fn a_core_module_is_named_as_such() {
        let err = misfit(&component("(module)")).unwrap_err();
        assert!(err.contains("core WebAssembly module, not a component"), "{err}");
    }

    #[test]
    fn every_unknown_import_and_missing_export_is_named() {
        let bytes = component(
            r#"(component
                (import "wasi:http/types@0.2.3" (instance))
                (import "wasi:cli/stdout@0.2.3" (instance))
                (import "acme:db/query@1.0.0" (instance))
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (export "info" (func $f))
                (export "reconcile" (func $f))
                (export "related" (func $f))
            )"#,
        );
        let found = misfit(&bytes).unwrap().expect("misfit");
        assert_eq!(found.unknown_imports, ["wasi:http/types@0.2.3", "acme:db/query@1.0.0"]);
        assert_eq!(found.missing_exports, ["validate", "default", "default-related"]);
        let message = found.to_string();
        assert!(message.contains("--disable http fetch-event"), "{message}");
    }

    #[test]
    fn a_complete_0_1_world_fits() {
        let bytes = component(
            r#"(component
                (import "trellis:reconciler/types@0.1.0" (instance))
                (type $info (record (field "name" string)))
                (import "plugin-info" (type (eq $info)))
                (import "trellis:reconciler/host@0.1.0" (instance))
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (export "info" (func $f))
                (export "reconcile" (func $f))
                (export "validate" (func $f))
            )"#,
        );
        assert_eq!(misfit(&bytes).unwrap(), None);
    }
}
