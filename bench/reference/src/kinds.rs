//! The kinds the controller works with, as the plugin's `info` names them:
//! the parent kind, the child kinds it owns, and whether the plugin reads
//! the parent's Namespace. Each is looked up once through discovery.

use crate::Plugin;
use kube::Client;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope, pinned_kind};
use serde_json::{Value, json};

/// A kind the API server serves.
#[derive(Debug, Clone)]
pub struct Kind {
    pub api_version: String,
    pub kind: String,
    /// Group, version, plural: how to reach it.
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    /// Whether `object` (JSON) is of this kind.
    pub fn is_kind_of(&self, object: &Value) -> bool {
        object["apiVersion"] == self.api_version.as_str() && object["kind"] == self.kind.as_str()
    }

    /// An object of this kind as JSON, with apiVersion and kind set (list
    /// items and watch events may lack them).
    pub fn to_json(&self, object: &DynamicObject) -> Value {
        let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
        value["apiVersion"] = json!(self.api_version);
        value["kind"] = json!(self.kind);
        value
    }
}

/// Everything the plugin's `info` asks for.
#[derive(Debug, Clone)]
pub struct Kinds {
    pub parent: Kind,
    pub children: Vec<Kind>,
    /// The plugin reads the parent's Namespace (as a related object).
    pub namespace_related: bool,
}

impl Kinds {
    /// The child kind of a desired child.
    pub fn child_kind(&self, child: &Value) -> Option<&Kind> {
        self.children.iter().find(|k| k.is_kind_of(child))
    }
}

/// Discovery failed: the kind is not served, or the API is unreachable.
#[derive(Debug, thiserror::Error)]
#[error("kind {api_version} {kind} is not served by the API server: {source}")]
pub struct KindError {
    pub api_version: String,
    pub kind: String,
    #[source]
    pub source: kube::Error,
}

/// Resolves the plugin's kinds. Related kinds other than Namespace are not
/// handed to the plugin (msdeploy reads no other).
pub async fn resolve(client: &Client) -> Result<Kinds, KindError> {
    // The plugin's info as the host reads it; `PluginInfo` keeps its fields
    // private, its WIT form does not.
    let info = trellis_sdk::glue::info::<Plugin>();
    let parent = resolve_one(client, &info.parent.api_version, &info.parent.kind).await?;
    let mut children = Vec::new();
    for child in &info.children {
        children.push(resolve_one(client, &child.api_version, &child.kind).await?);
    }
    let mut namespace_related = false;
    for related in &info.related {
        if related.api_version == "v1" && related.kind == "Namespace" {
            namespace_related = true;
        } else {
            tracing::warn!(api_version = %related.api_version, kind = %related.kind, "related kind not watched: the plugin will not see it");
        }
    }
    Ok(Kinds {
        parent,
        children,
        namespace_related,
    })
}

async fn resolve_one(client: &Client, api_version: &str, kind: &str) -> Result<Kind, KindError> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(|source| KindError {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        source,
    })?;
    Ok(Kind {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        resource,
        namespaced: capabilities.scope == Scope::Namespaced,
    })
}
