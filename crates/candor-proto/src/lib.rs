//! gRPC interface of Candor, generated from `proto/` at the repository root.
//!
//! * [`candor::v1`] (proto package `candor.v1`): the public
//!   `KeyTransparency` service. Clients use
//!   [`candor::v1::key_transparency_client::KeyTransparencyClient`]; the api
//!   role implements [`candor::v1::key_transparency_server::KeyTransparency`]
//!   and serves it with
//!   [`candor::v1::key_transparency_server::KeyTransparencyServer`].
//! * [`raft::v1`] (proto package `candor.raft.v1`): the internal
//!   `RaftTransport` service between Candor nodes; its payloads are opaque
//!   bytes serialized by the Raft layer.
//! * [`admin::v1`] (proto package `candor.admin.v1`): the internal
//!   `ClusterAdmin` service (membership changes), served on the Raft port.
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of every file, with
//!   comments, for `tonic-reflection`.
//!
//! The contract lives in the `.proto` comments (rendered as rustdoc on the
//! generated types): proofs and signed objects are `bytes` in the canonical
//! encodings of `docs/protocol.md`; the decoded convenience fields beside them
//! are not authenticated. Every RPC documents the gRPC status it returns for
//! each bad input.
//!
//! Building needs no system `protoc`: `build.rs` compiles the protos with
//! `protox`.

/// Proto package `candor`.
pub mod candor {
    /// Proto package `candor.v1`: the public key transparency service.
    #[allow(
        clippy::all,
        clippy::pedantic,
        missing_docs,
        rustdoc::invalid_html_tags,
        rustdoc::bare_urls,
        rustdoc::broken_intra_doc_links
    )]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/candor.v1.rs"));
    }
}

/// Proto package `candor.raft` (exposed at the crate root: `raft::v1`).
pub mod raft {
    /// Proto package `candor.raft.v1`: the internal Raft transport.
    #[allow(
        clippy::all,
        clippy::pedantic,
        missing_docs,
        rustdoc::invalid_html_tags,
        rustdoc::bare_urls,
        rustdoc::broken_intra_doc_links
    )]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/candor.raft.v1.rs"));
    }
}

/// Proto package `candor.admin` (exposed at the crate root: `admin::v1`).
pub mod admin {
    /// Proto package `candor.admin.v1`: internal cluster administration.
    #[allow(
        clippy::all,
        clippy::pedantic,
        missing_docs,
        rustdoc::invalid_html_tags,
        rustdoc::bare_urls,
        rustdoc::broken_intra_doc_links
    )]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/candor.admin.v1.rs"));
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of `candor/v1/candor.proto`,
/// `candor/v1/raft.proto` and `candor/v1/admin.proto` (with source comments), for
/// `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/candor_descriptor.bin"));

/// Encoded `FileDescriptorSet` of `candor/v1/candor.proto` alone: what the public API
/// port's reflection serves (it does not serve the Raft or admin services).
pub const PUBLIC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/candor_public_descriptor.bin"));

pub mod codec;

/// Full gRPC service name of the public service, `candor.v1.KeyTransparency`
/// (the name health checks and reflection use).
pub const KEY_TRANSPARENCY_SERVICE: &str = "candor.v1.KeyTransparency";

/// Full gRPC service name of the Raft transport, `candor.raft.v1.RaftTransport`.
pub const RAFT_TRANSPORT_SERVICE: &str = "candor.raft.v1.RaftTransport";

/// Full gRPC service name of the cluster administration service,
/// `candor.admin.v1.ClusterAdmin`.
pub const CLUSTER_ADMIN_SERVICE: &str = "candor.admin.v1.ClusterAdmin";
