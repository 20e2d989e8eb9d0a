//! The Wasm OCI artifact layout, as pure functions: the media types a
//! plugin's manifest is written with and accepted with, the config written
//! beside the module, and which layer of a pulled manifest is the module.
//!
//! Trellis writes the CNCF TAG Runtime layout that wasm-pkg-tools (`wkg`)
//! reads and writes: config `application/vnd.wasm.config.v0+json`, one
//! layer `application/wasm`. It reads that and the older layout of
//! wasm-to-oci and Kubewarden: config `application/vnd.wasm.config.v1+json`,
//! layer `application/vnd.wasm.content.layer.v1+wasm`.

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde_json::json;

/// The config media type Trellis writes (the CNCF Wasm OCI artifact layout).
pub const WASM_CONFIG_V0: &str = "application/vnd.wasm.config.v0+json";
/// The older config media type (wasm-to-oci, Kubewarden), accepted on pull.
pub const WASM_CONFIG_V1: &str = oci_client::manifest::WASM_CONFIG_MEDIA_TYPE;
/// The layer media type Trellis writes.
pub const WASM_LAYER: &str = "application/wasm";
/// The older layer media type (wasm-to-oci, Kubewarden), accepted on pull.
pub const WASM_LAYER_V1: &str = oci_client::manifest::WASM_LAYER_MEDIA_TYPE;

/// Why a manifest is not a plugin module's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The config is not a Wasm config.
    #[error("its config media type is {0:?}, not a Wasm artifact's ({WASM_CONFIG_V0} or {WASM_CONFIG_V1})")]
    NotWasmConfig(String),
    /// An image index (of platforms), where one manifest was expected.
    #[error("it is an image index; a module is one manifest")]
    ImageIndex,
    /// No layer, or more than one, is a Wasm module.
    #[error("it has {found} layers of a Wasm media type ({WASM_LAYER} or {WASM_LAYER_V1}), not one (layers: {layers})")]
    WasmLayers {
        /// How many there are.
        found: usize,
        /// The media types of all its layers.
        layers: String,
    },
}

/// The config document written beside a module: the layout's fields that
/// need no parsing of the component (`created`, `architecture`, `os`,
/// `layerDigests`; `component`, its imports and exports, is optional and
/// left out).
pub fn config_json(layer_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "created": jiff::Timestamp::now().to_string(),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    }))
    .expect("a JSON value serialises")
}

/// The one layer of `manifest` that is the module, checked to be a Wasm
/// artifact's.
pub fn module_layer(manifest: &OciImageManifest) -> Result<&OciDescriptor, LayoutError> {
    if manifest.config.media_type != WASM_CONFIG_V0 && manifest.config.media_type != WASM_CONFIG_V1 {
        return Err(LayoutError::NotWasmConfig(manifest.config.media_type.clone()));
    }
    let wasm: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == WASM_LAYER || layer.media_type == WASM_LAYER_V1)
        .collect();
    match wasm.as_slice() {
        [layer] => Ok(layer),
        _ => Err(LayoutError::WasmLayers {
            found: wasm.len(),
            layers: manifest
                .layers
                .iter()
                .map(|layer| layer.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[&str]) -> OciImageManifest {
        let mut manifest = OciImageManifest::default();
        manifest.config.media_type = config.to_owned();
        manifest.layers = layers
            .iter()
            .enumerate()
            .map(|(i, media_type)| OciDescriptor {
                media_type: (*media_type).to_owned(),
                digest: format!("sha256:{i:064}"),
                ..OciDescriptor::default()
            })
            .collect();
        manifest
    }

    #[test]
    fn both_layouts_name_their_module_layer() {
        let written = manifest(WASM_CONFIG_V0, &[WASM_LAYER]);
        assert_eq!(module_layer(&written).unwrap().media_type, WASM_LAYER);
        let kubewarden = manifest(WASM_CONFIG_V1, &["application/vnd.example.readme", WASM_LAYER_V1]);
        assert_eq!(module_layer(&kubewarden).unwrap().digest, format!("sha256:{:064}", 1));
    }

    #[test]
    fn a_container_image_is_not_a_module() {
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        );
        assert_eq!(
            module_layer(&image).unwrap_err(),
            LayoutError::NotWasmConfig("application/vnd.oci.image.config.v1+json".into())
        );
    }

    #[test]
    fn two_modules_or_none_is_ambiguous() {
        let two = manifest(WASM_CONFIG_V0, &[WASM_LAYER, WASM_LAYER]);
        assert!(matches!(
            module_layer(&two),
            Err(LayoutError::WasmLayers { found: 2, .. })
        ));
        let none = manifest(WASM_CONFIG_V0, &["text/plain"]);
        let message = module_layer(&none).unwrap_err().to_string();
        assert!(
            message.contains("0 layers") && message.contains("text/plain"),
            "{message}"
        );
    }

    #[test]
    fn the_config_lists_the_module_layer() {
        let config: serde_json::Value = serde_json::from_slice(&config_json("sha256:abc")).unwrap();
        assert_eq!(config["layerDigests"], json!(["sha256:abc"]));
        assert_eq!(
            (config["architecture"].as_str(), config["os"].as_str()),
            (Some("wasm"), Some("wasip2"))
        );
        // RFC 3339, as the layout's readers parse it.
        let created = config["created"].as_str().unwrap();
        assert!(
            created.parse::<jiff::Timestamp>().is_ok() && created.ends_with('Z'),
            "{created}"
        );
    }
}
