//! [`PluginInfo`]: what a plugin reconciles and which kinds it may touch.

use crate::bindings::trellis::reconciler::types;
use k8s_openapi::Resource;

/// Describes a plugin. Build it with [`PluginInfo::new`] and the
/// `child`/`related` methods; [`PluginInfo::validating`] and
/// [`PluginInfo::defaulting`] ask for the admission hooks.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    name: String,
    version: String,
    parent: (String, String),
    children: Vec<(String, String)>,
    related: Vec<(String, String)>,
    finalizer: bool,
    validating: bool,
    defaulting: bool,
    default_related: Vec<(String, String)>,
}

impl PluginInfo {
    /// A plugin named `name` (a DNS label) reconciling `kind` in
    /// `api_version` (e.g. `custom.ops/v1`). The version defaults to the
    /// plugin crate's version when set with [`PluginInfo::version`].
    pub fn new(name: &str, api_version: &str, kind: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: "0.0.0".to_owned(),
            parent: (api_version.to_owned(), kind.to_owned()),
            children: Vec::new(),
            related: Vec::new(),
            finalizer: false,
            validating: false,
            defaulting: false,
            default_related: Vec::new(),
        }
    }

    /// Sets the plugin's version, usually `env!("CARGO_PKG_VERSION")`.
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Allows the plugin to emit children of the Kubernetes type `K`.
    pub fn child<K: Resource>(self) -> Self {
        self.child_kind(K::API_VERSION, K::KIND)
    }

    /// Allows the plugin to emit children of a kind given by name.
    pub fn child_kind(mut self, api_version: &str, kind: &str) -> Self {
        self.children.push((api_version.to_owned(), kind.to_owned()));
        self
    }

    /// Lets the plugin read objects of type `K` (handed in as `related`).
    pub fn related<K: Resource>(self) -> Self {
        self.related_kind(K::API_VERSION, K::KIND)
    }

    /// Lets the plugin read objects of a kind given by name.
    pub fn related_kind(mut self, api_version: &str, kind: &str) -> Self {
        self.related.push((api_version.to_owned(), kind.to_owned()));
        self
    }

    /// Asks the host for a finalizer: the plugin is called with
    /// `finalizing` set when a parent is deleted.
    pub fn with_finalizer(mut self) -> Self {
        self.finalizer = true;
        self
    }

    /// Asks for the `validate` admission hook: the host calls
    /// [`crate::Reconciler::validate`] before a parent is stored, and a
    /// refusal reaches the user.
    pub fn validating(mut self) -> Self {
        self.validating = true;
        self
    }

    /// Asks for the `default` admission hook: the host calls
    /// [`crate::Reconciler::default`] before a parent is validated and
    /// stored.
    pub fn defaulting(mut self) -> Self {
        self.defaulting = true;
        self
    }

    /// Fills in new objects of the related kind `K` (which this also makes
    /// a related kind) before they are stored: the host calls
    /// [`crate::Reconciler::default_related`] from a webhook that admits
    /// the object unchanged if the plugin fails.
    pub fn defaulting_related<K: Resource>(mut self) -> Self {
        let kind = (K::API_VERSION.to_owned(), K::KIND.to_owned());
        if !self.related.contains(&kind) {
            self.related.push(kind.clone());
        }
        self.default_related.push(kind);
        self
    }

    pub(crate) fn into_wit(self) -> types::PluginInfo {
        let kind = |(api_version, kind): (String, String)| types::KindRef { api_version, kind };
        let mut admission = types::AdmissionHooks::empty();
        if self.validating {
            admission |= types::AdmissionHooks::VALIDATE;
        }
        if self.defaulting {
            admission |= types::AdmissionHooks::DEFAULT;
        }
        types::PluginInfo {
            name: self.name,
            version: self.version,
            parent: kind(self.parent),
            children: self.children.into_iter().map(kind).collect(),
            related: self.related.into_iter().map(kind).collect(),
            finalizer: self.finalizer,
            admission,
            default_related: self.default_related.into_iter().map(kind).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_hooks_are_asked_for_by_name() {
        let info = || PluginInfo::new("p", "example.com/v1", "Thing");
        assert_eq!(info().into_wit().admission, types::AdmissionHooks::empty());
        assert_eq!(
            info().validating().into_wit().admission,
            types::AdmissionHooks::VALIDATE
        );
        assert_eq!(info().defaulting().into_wit().admission, types::AdmissionHooks::DEFAULT);
        assert_eq!(
            info().validating().defaulting().into_wit().admission,
            types::AdmissionHooks::VALIDATE | types::AdmissionHooks::DEFAULT
        );
    }
}
