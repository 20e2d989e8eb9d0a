//! Greeter, version 1: greets with "hello" (see ../greeter.rs).

const GREETING: &str = "hello";
const VERSION: &str = "1";

include!("../../greeter.rs");
