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
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! in `target/wasm32-wasip2/release/` is the plugin. The contract behind this
//! crate is the WIT package `trellis:reconciler` in `wit/reconciler.wit`.

pub mod bindings;
mod error;
mod info;
pub mod log;
pub mod quantity;
pub mod random;
mod request;
mod response;
pub mod workload;

pub use error::Error;
pub use info::PluginInfo;
pub use request::Request;
pub use response::{CREATE_ONLY, Condition, Response};

/// Re-exported so plugins use the same versions as the SDK.
pub use k8s_openapi;
pub use serde_json;

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::{Condition, Error, PluginInfo, Reconciler, Request, Response};
    pub use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    pub use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
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

    /// Checks a parent before it is admitted. The default accepts anything.
    fn validate(_obj: &serde_json::Value, _old: Option<&serde_json::Value>) -> Result<(), Vec<String>> {
        Ok(())
    }
}

/// Glue between the generated bindings and a [`Reconciler`]; used by
/// [`export_reconciler!`], not meant to be called directly.
#[doc(hidden)]
pub mod glue {
    use crate::bindings::trellis::reconciler::types;
    use crate::{Reconciler, Request};

    pub fn info<R: Reconciler>() -> types::PluginInfo {
        R::info().into_wit()
    }

    pub fn reconcile<R: Reconciler>(req: types::Request) -> Result<types::Response, types::Error> {
        let req = Request::from_wit(req).map_err(crate::Error::into_wit)?;
        R::reconcile(&req)
            .map(crate::Response::into_wit)
            .map_err(crate::Error::into_wit)
    }

    pub fn validate<R: Reconciler>(obj: String, old: Option<String>) -> Result<(), Vec<String>> {
        let parse = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| vec![format!("the object is not valid JSON: {e}")])
        };
        let obj = parse(&obj)?;
        let old = old.as_deref().map(parse).transpose()?;
        R::validate(&obj, old.as_ref())
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
            fn validate(
                obj: ::std::string::String,
                old: ::core::option::Option<::std::string::String>,
            ) -> ::core::result::Result<(), ::std::vec::Vec<::std::string::String>> {
                $crate::glue::validate::<$reconciler>(obj, old)
            }
        }

        $crate::bindings::export!(__TrellisExports with_types_in $crate::bindings);
    };
}
