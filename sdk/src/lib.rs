//! `trellis-sdk`: write a Trellis reconciler plugin in Rust.
//!
//! A plugin is one type implementing [`Reconciler`] and one line exporting it:
//!
//! ```ignore
//! use trellis_sdk::prelude::*;
//!
//! struct Hello;
//! impl Reconciler for Hello {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("hello", "example.com/v1", "Hello").child::<ConfigMap>()
//!     }
//!     fn reconcile(req: &Request) -> Result<Response, Error> {
//!         let parent: serde_json::Value = req.parent()?;
//!         Ok(Response::new().child(&ConfigMap { metadata: req.child_meta("hello"), ..Default::default() }))
//!     }
//! }
//! trellis_sdk::export_reconciler!(Hello);
//! ```
//!
//! A plugin may also take part in admission: [`PluginInfo::validating`] has
//! the host call [`Reconciler::validate`] (with an [`AdmissionRequest`])
//! before a parent is stored, [`PluginInfo::defaulting`] has it call
//! [`Reconciler::default`] to fill in `metadata.labels`,
//! `metadata.annotations` and `spec` first.
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! in `target/wasm32-wasip2/release/` is the plugin. The contract behind this
//! crate is the WIT package `trellis:reconciler@0.2.0` in
//! `wit/v0.2/reconciler.wit`.

mod admission;
pub mod bindings;
#[cfg(feature = "crd")]
pub mod crd;
mod error;
mod info;
pub mod labels;
pub mod log;
mod objects;
pub mod quantity;
pub mod random;
mod related;
mod request;
mod response;
pub mod workload;

pub use admission::{AdmissionRequest, Operation, UserInfo};
pub use error::Error;
pub use info::PluginInfo;
pub use related::RelatedSelector;
pub use request::Request;
pub use response::{CREATE_ONLY, Condition, Decoration, Response};

/// Re-exported so plugins use the same versions as the SDK.
pub use k8s_openapi;
pub use serde_json;

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::{
        AdmissionRequest, Condition, Decoration, Error, Operation, PluginInfo, Reconciler, RelatedSelector, Request,
        Response, UserInfo,
    };
    pub use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    pub use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json};
}

/// A reconciler plugin. Implement it on a unit type and export it with
/// [`export_reconciler!`].
pub trait Reconciler {
    /// What the plugin reconciles and which kinds it may emit or read.
    fn info() -> PluginInfo;

    /// Computes the desired children and status for one parent.
    fn reconcile(req: &Request) -> Result<Response, Error>;

    /// Which related objects `parent` needs, asked before each reconcile:
    /// the host then hands only those to [`Reconciler::reconcile`] and
    /// reconciles the parent again only when one of them changes. The
    /// default, `None`, is every object of the related kinds in the
    /// parent's namespace (or cluster-scoped).
    fn related(_parent: &serde_json::Value) -> Option<Vec<RelatedSelector>> {
        None
    }

    /// Checks a parent before it is stored; called by the host only when
    /// [`Reconciler::info`] asks with [`PluginInfo::validating`]. The error
    /// is the list of problems, one sentence each, shown to the user. The
    /// default accepts anything.
    fn validate(_req: &AdmissionRequest) -> Result<(), Vec<String>> {
        Ok(())
    }

    /// Fills in defaults of a parent, in place, before it is validated and
    /// stored; called by the host only when [`Reconciler::info`] asks with
    /// [`PluginInfo::defaulting`]. Only `metadata.labels`,
    /// `metadata.annotations` and `spec` may change (the host refuses any
    /// other change). An error refuses the request with its sentences. The
    /// default changes nothing.
    ///
    /// A plugin type that also implements [`Default`] has to call this one
    /// as `<P as Reconciler>::default(..)`.
    fn default(_obj: &mut serde_json::Value) -> Result<(), Vec<String>> {
        Ok(())
    }

    /// Fills in, in place, a new object of a kind
    /// [`PluginInfo::defaulting_related`] names before it is stored, given
    /// the plugin's parents of its namespace; called by the host only for
    /// those kinds. Only `metadata.labels`, `metadata.annotations` and
    /// `spec` may change. An error admits the object unchanged (with a
    /// warning to the user). The default changes nothing.
    fn default_related(_obj: &mut serde_json::Value, _parents: &[serde_json::Value]) -> Result<(), Vec<String>> {
        Ok(())
    }
}

/// Glue between the generated bindings and a [`Reconciler`]; used by
/// [`export_reconciler!`], not meant to be called directly.
#[doc(hidden)]
pub mod glue {
    use crate::bindings::trellis::reconciler::types;
    use crate::{AdmissionRequest, Reconciler, Request};

    pub fn info<R: Reconciler>() -> types::PluginInfo {
        R::info().into_wit()
    }

    pub fn reconcile<R: Reconciler>(req: types::Request) -> Result<types::Response, types::Error> {
        let req = Request::from_wit(req).map_err(crate::Error::into_wit)?;
        R::reconcile(&req)
            .map(crate::Response::into_wit)
            .map_err(crate::Error::into_wit)
    }

    pub fn related<R: Reconciler>(parent: String) -> Option<Vec<types::RelatedSelector>> {
        // A parent that does not parse gets the default; `reconcile` then
        // reports what is wrong with it.
        let parent = serde_json::from_str::<serde_json::Value>(&parent).ok()?;
        R::related(&parent).map(|selectors| selectors.into_iter().map(crate::RelatedSelector::into_wit).collect())
    }

    pub fn validate<R: Reconciler>(req: types::AdmissionRequest) -> Result<(), Vec<String>> {
        R::validate(&AdmissionRequest::from_wit(req)?)
    }

    pub fn default_related<R: Reconciler>(obj: String, parents: Vec<String>) -> Result<String, Vec<String>> {
        let parse = |what: &str, text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| vec![format!("the {what} is not valid JSON: {e}")])
        };
        let mut obj = parse("object", &obj)?;
        let parents = parents
            .iter()
            .map(|p| parse("parent", p))
            .collect::<Result<Vec<_>, _>>()?;
        R::default_related(&mut obj, &parents)?;
        Ok(obj.to_string())
    }

    pub fn default<R: Reconciler>(obj: String) -> Result<String, Vec<String>> {
        let mut obj = serde_json::from_str::<serde_json::Value>(&obj)
            .map_err(|e| vec![format!("the object is not valid JSON: {e}")])?;
        <R as Reconciler>::default(&mut obj)?;
        Ok(obj.to_string())
    }
}

/// Exports a [`Reconciler`] as the plugin's implementation of the
/// `trellis:reconciler/reconciler` world.
#[macro_export]
macro_rules! export_reconciler {
    ($reconciler:ty) => {
        #[doc(hidden)]
        struct __TrellisExports;

        impl $crate::bindings::Guest for __TrellisExports {
            fn info() -> $crate::bindings::trellis::reconciler::types::PluginInfo {
                $crate::glue::info::<$reconciler>()
            }
            fn reconcile(
                req: $crate::bindings::trellis::reconciler::types::Request,
            ) -> ::core::result::Result<
                $crate::bindings::trellis::reconciler::types::Response,
                $crate::bindings::trellis::reconciler::types::Error,
            > {
                $crate::glue::reconcile::<$reconciler>(req)
            }
            fn related(
                parent: ::std::string::String,
            ) -> ::core::option::Option<
                ::std::vec::Vec<$crate::bindings::trellis::reconciler::types::RelatedSelector>,
            > {
                $crate::glue::related::<$reconciler>(parent)
            }
            fn validate(
                req: $crate::bindings::trellis::reconciler::types::AdmissionRequest,
            ) -> ::core::result::Result<(), ::std::vec::Vec<::std::string::String>> {
                $crate::glue::validate::<$reconciler>(req)
            }
            fn default(
                obj: ::std::string::String,
            ) -> ::core::result::Result<::std::string::String, ::std::vec::Vec<::std::string::String>> {
                $crate::glue::default::<$reconciler>(obj)
            }
            fn default_related(
                obj: ::std::string::String,
                parents: ::std::vec::Vec<::std::string::String>,
            ) -> ::core::result::Result<::std::string::String, ::std::vec::Vec<::std::string::String>> {
                $crate::glue::default_related::<$reconciler>(obj, parents)
            }
        }

        $crate::bindings::export!(__TrellisExports with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Implements [`Default`] too: the glue must still call the hook.
    #[derive(Default)]
    struct Labeller;

    impl Reconciler for Labeller {
        fn info() -> PluginInfo {
            PluginInfo::new("labeller", "example.com/v1", "Thing").defaulting()
        }
        fn reconcile(_req: &Request) -> Result<Response, Error> {
            Ok(Response::new())
        }
        fn default(obj: &mut serde_json::Value) -> Result<(), Vec<String>> {
            if obj["spec"]["refuse"] == true {
                return Err(vec!["refused".to_owned()]);
            }
            obj["metadata"]["labels"]["defaulted"] = json!("yes");
            Ok(())
        }
    }

    #[test]
    fn default_returns_the_changed_object_or_the_refusal() {
        let out = glue::default::<Labeller>(json!({"metadata": {}, "spec": {}}).to_string()).unwrap();
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["metadata"]["labels"]["defaulted"], "yes");
        let refused = glue::default::<Labeller>(json!({"spec": {"refuse": true}}).to_string());
        assert_eq!(refused.unwrap_err(), ["refused"]);
        let garbage = glue::default::<Labeller>("{".to_owned()).unwrap_err();
        assert_eq!(garbage.len(), 1);
        assert!(garbage[0].starts_with("the object is not valid JSON"), "{garbage:?}");
    }

    #[test]
    fn the_default_hooks_accept_and_change_nothing() {
        let obj = json!({"metadata": {"name": "t"}, "spec": {"a": 1}});
        assert_eq!(glue::default::<Hookless>(obj.to_string()).unwrap(), obj.to_string());
        let req = AdmissionRequest::for_test(Operation::Delete, None, Some(obj));
        assert_eq!(Hookless::validate(&req), Ok(()));
    }

    struct Hookless;

    impl Reconciler for Hookless {
        fn info() -> PluginInfo {
            PluginInfo::new("hookless", "example.com/v1", "Thing")
        }
        fn reconcile(_req: &Request) -> Result<Response, Error> {
            Ok(Response::new())
        }
    }
}
