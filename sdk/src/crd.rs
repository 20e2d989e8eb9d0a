//! CRDs from the plugin's own types (feature `crd`, for tests and build
//! steps, never in the module).
//!
//! A plugin derives kube's `CustomResource` and `schemars::JsonSchema` on its
//! spec under `cfg(test)`, and checks its committed CRD in a test:
//!
//! ```ignore
//! #[derive(Deserialize, Serialize, Clone, Debug)]
//! #[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
//! #[cfg_attr(test, kube(group = "example.com", version = "v1", kind = "Hello", namespaced, status = "HelloStatus"))]
//! pub struct HelloSpec { /* … */ }
//!
//! #[derive(Serialize, Deserialize, Clone, Debug)]
//! #[cfg_attr(test, derive(schemars::JsonSchema))]
//! #[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
//! pub struct HelloStatus { /* … */ }
//!
//! #[test]
//! fn crd_yaml_is_generated_from_the_types() {
//!     use kube::CustomResourceExt;
//!     trellis_sdk::crd::assert_current(&Hello::crd(), concat!(env!("CARGO_MANIFEST_DIR"), "/crd.yaml"));
//! }
//! ```
//!
//! `TRELLIS_WRITE_CRD=1 cargo test` writes the file instead of comparing.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

/// The variable that has [`assert_current`] write the CRD.
pub const WRITE_VARIABLE: &str = "TRELLIS_WRITE_CRD";

/// A schemars transform for a status type: adds the fields the host writes
/// beside the plugin's, so that the API server keeps them: `conditions`
/// (from the plugin's [`crate::Condition`]s; each an open object, as the
/// host owns `lastTransitionTime` and `observedGeneration`) and
/// `observedGeneration`. It also drops `required`: when a reconcile fails the
/// host writes the conditions alone, and a status missing a required field
/// would be refused, condition and all.
pub fn host_status_fields(schema: &mut schemars::Schema) {
    schema.remove("required");
    let conditions = json!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    });
    if let Some(properties) = schema
        .ensure_object()
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        properties.insert("conditions".to_owned(), conditions);
        properties.insert(
            "observedGeneration".to_owned(),
            json!({"type": "integer", "format": "int64"}),
        );
    }
}

/// The CRD as YAML, as [`assert_current`] compares and writes it.
pub fn to_yaml(crd: &impl Serialize) -> String {
    serde_yaml::to_string(crd).expect("a CRD serialises to YAML")
}

/// Asserts that the file at `path` holds `crd`, or writes it there when
/// `TRELLIS_WRITE_CRD` is set. Panics (a failed test) naming the file and
/// how to regenerate it.
pub fn assert_current(crd: &impl Serialize, path: impl AsRef<Path>) {
    let path = path.as_ref();
    let generated = to_yaml(crd);
    if std::env::var_os(WRITE_VARIABLE).is_some() {
        std::fs::write(path, &generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the CRD the types generate; regenerate it with `{WRITE_VARIABLE}=1 cargo test`.\n\
         --- committed\n{committed}\n--- generated\n{generated}",
        path.display()
    );
}

/// The schema of an `IntOrString` field (`targetPort: 8080` or `http`), for
/// `#[schemars(schema_with = "trellis_sdk::crd::int_or_string")]`.
pub fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-int-or-string": true})
}

/// The schema of a `LabelSelector` field, for
/// `#[schemars(schema_with = "trellis_sdk::crd::label_selector")]`: atomic,
/// as Kubernetes' own selectors are (server-side apply replaces a selector
/// whole, never merges two authors' terms), with the four operators a
/// selector may use and without the upstream descriptions.
pub fn label_selector(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string"},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    })
}

/// A schemars transform for a field of a Kubernetes type
/// (`#[schemars(transform = trellis_sdk::crd::without_descriptions)]`):
/// drops the upstream descriptions inside it, which would otherwise repeat
/// pages of API reference (a `Quantity` alone carries 2 KB) in the CRD. The
/// field's own doc comment stays.
pub fn without_descriptions(schema: &mut schemars::Schema) {
    if let Some(map) = schema.as_object_mut() {
        map.iter_mut()
            .for_each(|(key, value)| drop_keyword_below(key, value, "description"));
    }
}

/// A schemars transform for a spec type
/// (`#[schemars(transform = trellis_sdk::crd::without_defaults)]`): drops the
/// `default`s that `#[serde(default)]` fields bring, so that the API server
/// stores an object as its author wrote it and the plugin applies the
/// defaults (and reports them) itself.
pub fn without_defaults(schema: &mut schemars::Schema) {
    if let Some(map) = schema.as_object_mut() {
        map.iter_mut()
            .for_each(|(key, value)| drop_keyword_below(key, value, "default"));
    }
}

/// Removes the schema keyword `keyword` from the subschemas in `value`, the
/// value of keyword `key` of a schema. Field names (the keys of
/// `properties`) are not keywords, so a field named `default` stays.
fn drop_keyword_below(key: &str, value: &mut serde_json::Value, keyword: &str) {
    use serde_json::Value;
    fn drop_in_schema(schema: &mut Value, keyword: &str) {
        if let Value::Object(map) = schema {
            map.remove(keyword);
            map.iter_mut()
                .for_each(|(key, value)| drop_keyword_below(key, value, keyword));
        }
    }
    match (key, value) {
        ("properties" | "patternProperties" | "definitions" | "$defs", Value::Object(fields)) => {
            fields.values_mut().for_each(|schema| drop_in_schema(schema, keyword));
        }
        ("enum" | "const" | "default" | "examples" | "required", _) => {}
        (_, Value::Array(schemas)) => schemas.iter_mut().for_each(|schema| drop_in_schema(schema, keyword)),
        (_, schema @ Value::Object(_)) => drop_in_schema(schema, keyword),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(value: serde_json::Value) -> schemars::Schema {
        value.try_into().expect("an object is a schema")
    }

    #[test]
    fn defaults_go_at_every_depth_but_a_field_named_default_stays() {
        let mut spec = schema(json!({
            "type": "object",
            "properties": {
                "paused": {"type": "boolean", "default": false},
                "default": {"type": "object", "default": {}, "properties": {
                    "deep": {"type": "string", "default": "x", "enum": ["x", "y"]},
                }},
                "list": {"type": "array", "items": {"type": "integer", "default": 1}},
            },
        }));
        without_defaults(&mut spec);
        assert_eq!(
            serde_json::Value::from(spec),
            json!({
                "type": "object",
                "properties": {
                    "paused": {"type": "boolean"},
                    "default": {"type": "object", "properties": {
                        "deep": {"type": "string", "enum": ["x", "y"]},
                    }},
                    "list": {"type": "array", "items": {"type": "integer"}},
                },
            })
        );
    }

    #[test]
    fn descriptions_inside_go_and_the_fields_own_stays() {
        let mut field = schema(json!({
            "description": "the field's own",
            "anyOf": [{"type": "string", "description": "upstream"}],
            "properties": {"description": {"type": "string", "description": "upstream"}},
        }));
        without_descriptions(&mut field);
        assert_eq!(
            serde_json::Value::from(field),
            json!({
                "description": "the field's own",
                "anyOf": [{"type": "string"}],
                "properties": {"description": {"type": "string"}},
            })
        );
    }
}
