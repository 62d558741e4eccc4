#![no_main]
//! `candor_core::fuzz::check("head_extension", ...)`: decode, canonical re-encoding, verify.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| candor_core::fuzz::check("head_extension", data));
