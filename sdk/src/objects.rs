//! Helpers shared by [`crate::Request`] and [`crate::AdmissionRequest`]:
//! picking objects of one kind out of a list, reading metadata and parsing
//! the registration's config.

use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Whether `object` is of `api_version` + `kind`.
pub(crate) fn is_kind(object: &Value, api_version: &str, kind: &str) -> bool {
    object["apiVersion"] == api_version && object["kind"] == kind
}

/// The objects of `api_version` + `kind`, as JSON.
pub(crate) fn of_kind_json<'a>(objects: &'a [Value], api_version: &str, kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| is_kind(o, api_version, kind)).collect()
}

/// The objects of type `K`; objects that do not deserialise are skipped
/// (they are the host's view of the cluster, not input the plugin has to
/// judge).
pub(crate) fn of_kind<K: Resource + DeserializeOwned>(objects: &[Value]) -> Vec<K> {
    of_kind_json(objects, K::API_VERSION, K::KIND)
        .into_iter()
        .filter_map(|o| K::deserialize(o).ok())
        .collect()
}

/// The object of `api_version` + `kind` called `name`, if any.
pub(crate) fn named<'a>(objects: &'a [Value], api_version: &str, kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| is_kind(o, api_version, kind) && o["metadata"]["name"] == name)
}

/// `metadata.<field>` of `object` as a string, empty when missing.
pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    object["metadata"][field].as_str().unwrap_or_default()
}

/// The registration's config deserialised into `T`; the error is a sentence.
pub(crate) fn config<T: DeserializeOwned>(config: Option<&Value>) -> Result<Option<T>, String> {
    config
        .map(|c| T::deserialize(c).map_err(|e| format!("plugin config: {e}")))
        .transpose()
}

/// Parses JSON text the host sent as `what`; the error is a sentence.
pub(crate) fn parse(what: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the host sent invalid JSON as {what}: {e}"))
}
