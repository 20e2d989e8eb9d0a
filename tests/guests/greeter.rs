// The greeter test plugin, shared by `greeter-v1` and `greeter-v2`, which
// differ only in `GREETING` and `VERSION`: two modules for the same kind, to
// test replacing a module and seeing the new behaviour.

use trellis_sdk::prelude::*;

/// The plugin.
pub struct Greeter;

impl Reconciler for Greeter {
    fn info() -> PluginInfo {
        PluginInfo::new("greeter", "test.trellis.dev/v1", "Greeter")
            .version(VERSION)
            .child::<ConfigMap>()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let greeting = ConfigMap {
            metadata: req.child_meta(&format!("{}-greeting", req.name())),
            data: Some([("greeting".to_owned(), GREETING.to_owned())].into()),
            ..Default::default()
        };
        Ok(Response::new()
            .child(&greeting)
            .condition(Condition::ready(true, "Greeted", GREETING)))
    }
}

trellis_sdk::export_reconciler!(Greeter);
