//! Both built-in backends pass the shared conformance suite.

use candor_store::conformance::{FjallFactory, MemFactory, run_conformance};

#[test]
fn mem_store_conforms() {
    run_conformance(MemFactory::default());
}

#[test]
fn fjall_store_conforms() {
    run_conformance(FjallFactory::default());
}
