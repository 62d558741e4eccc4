#![no_main]
//! `candor_core::fuzz::check("config_rotation", ...)`: decode, canonical re-encoding,
//! verify (a statement and a two-configuration chain).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| candor_core::fuzz::check("config_rotation", data));
