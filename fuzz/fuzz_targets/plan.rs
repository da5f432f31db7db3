//! Fuzz the planner on in-memory unit trees (properties in ../checks.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::plan(data));
