//! `uniffi-bindgen` for candor-ffi, pinned to the same uniffi version as the
//! library (generated code and scaffolding must match). Usage:
//!
//! ```sh
//! cargo run -p candor-ffi-bindgen --bin uniffi-bindgen -- generate \
//!     --library target/debug/libcandor_ffi.so --language swift --out-dir out/swift
//! ```

fn main() {
    uniffi::uniffi_bindgen_main()
}
