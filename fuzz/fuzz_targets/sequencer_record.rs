#![no_main]
//! `harness::check("sequencer_record", ...)`: see fuzz/harness/mod.rs.
use libfuzzer_sys::fuzz_target;

#[path = "../harness/mod.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::check("sequencer_record", data));
