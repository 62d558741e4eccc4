//! The backend conformance suite (feature `test-util`).
