//! The control-plane test harness.
