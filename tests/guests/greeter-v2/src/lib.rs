//! Greeter, version 2: greets with "bonjour" (see ../greeter.rs).

const GREETING: &str = "bonjour";
const VERSION: &str = "2";

include!("../../greeter.rs");
