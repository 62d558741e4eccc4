//! # candor-ffi: the Candor SDK for Python, Swift and Kotlin
//!
//! One Rust verifier behind bindings, as libsignal's key transparency and
//! akd_core do: other languages get exactly the checks of
//! [`candor_client`] and [`candor_core`], not a re-implementation.
//!
//! ## What is exported
//!
//! * [`Client`]: pin a configuration ([`Pin`]: digest or config bytes),
//!   `publish` (SMT verified against the label and value sent), `lookup`,
//!   `history`, `wait_merged` (the SMT honoured, or a `BrokenPromise` with
//!   evidence), `latest_head` / `head` / `observe_head` /
//!   `verify_consistency` (head tracking: every head seen must extend the
//!   last one), `tracker_state` to persist it, and `monitor`.
//! * [`Monitor`]: the owner monitor step (`poll`), alarms for versions the
//!   owner did not publish, rewritten or shortened histories.
//! * [`contact_code`]: the contact verification code two people compare.
//! * [`Verifier`]: the same checks on raw head / SMT / proof bytes, for
//!   callers that bring their own transport.
//!
//! Results carry the verified data (the head, index, leaf hashes) and a
//! `verified` list naming the checks that passed.
//!
//! ## Errors
//!
//! [`CandorError`]: `Verification` (a security event; its
//! [`VerificationKind`] says proof, pin mismatch, equivocation or broken
//! promise, with evidence bytes for the last two), `Transport`,
//! `ServerStatus` (gRPC code and message), `InvalidArgument`, `State`,
//! `Timeout`, `Internal`. Every exported call runs under `catch_unwind`, so a
//! panic is an `Internal` error, never an unwind into foreign code (Swift
//! would otherwise `fatalError`).
//!
//! ## Why uniffi for every language (Python included)
//!
//! The interface is declared once, with uniffi's proc-macros, and the
//! Python, Swift and Kotlin sources are generated from the built library.
//! The Python package (maturin's `uniffi` bindings) therefore exercises the
//! very scaffolding, type conversions, error mapping and panic guard that
//! Swift and Kotlin call, and the pytest suite is the test of the mobile
//! interface too; this machine has no Swift or Kotlin toolchain, so that
//! matters. PyO3 would give a more idiomatic Python object model and save a
//! few microseconds per call (uniffi goes through `ctypes` and serialises
//! records into a buffer), but it would be a second binding layer to keep in
//! step, and untested for the mobile languages. A verified lookup costs far
//! more than the call overhead (see the figures in the README's Python
//! section), and the small Python package `candor` on top adds the
//! idioms (str labels, keyword arguments, exception aliases).
//!
//! ## Blocking calls, one runtime
//!
//! The SDK is async (tokio, tonic); the exported calls are blocking. The
//! library owns one small tokio runtime per process ([`runtime`]); Python's
//! ctypes releases the GIL during a call. Swift and Kotlin callers call from
//! a background thread / dispatcher.
//!
//! ## Generating the Swift and Kotlin sources
//!
//! ```sh
//! cargo build -p candor-ffi
//! cargo run -p candor-ffi-bindgen --bin uniffi-bindgen -- generate \
//!     --library target/debug/libcandor_ffi.so --language swift --language kotlin \
//!     --out-dir target/ffi-bindings
//! ```
//!
//! `tests/ffi/run.sh` does this in CI and checks the generated sources name
//! the exported API. Compiling them needs Xcode / the Kotlin toolchain (with
//! JNA), which the CI machine lacks: the generated interface is tested
//! through Python, which loads the same library through the same
//! scaffolding.

uniffi::setup_scaffolding!();

mod client;
mod error;
pub mod runtime;
mod types;
mod verifier;

pub use client::{Client, Monitor};
pub use error::{CandorError, Result, VerificationKind};
pub use types::{
    Head, HistoryResult, HistoryVersion, KnownVersion, LookupResult, MergeResult, MonitorEvent,
    MonitorEventKind, Pin, PublishResult,
};
pub use verifier::{ConsistencyResponseParts, PublishResponseParts, SmtInfo, Verifier};

/// The protocol suite this library verifies.
#[uniffi::export]
pub fn suite() -> String {
    "candor-v1".to_owned()
}

/// The contact verification code of two parties: 12 groups of 5 digits that
/// both compute from each other's label and published key (the value under
/// the label) and compare out of band. Symmetric: swapping the parties gives
/// the same code. A match proves each sees the other's real keys; a mismatch
/// means one of them was shown keys the other did not publish.
#[uniffi::export]
pub fn contact_code(
    label_a: Vec<u8>,
    key_a: Vec<u8>,
    label_b: Vec<u8>,
    key_b: Vec<u8>,
) -> Result<String> {
    runtime::guard(|| {
        Ok(candor_client::contact_code(
            &label_a, &key_a, &label_b, &key_b,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_code_matches_the_sdk_vector() {
        // The SDK's pinned test vector: the binding adds nothing of its own.
        assert_eq!(
            contact_code(
                b"alice".to_vec(),
                b"key-a".to_vec(),
                b"bob".to_vec(),
                b"key-b".to_vec()
            )
            .unwrap(),
            "98847 06193 14087 46920 68863 36146 34854 12433 54326 97644 94084 62124"
        );
    }
}
