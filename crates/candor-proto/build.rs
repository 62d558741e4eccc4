//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic clients and servers.

use std::{env, fs, path::PathBuf};

/// Proto files, relative to the proto root.
const PROTOS: &[&str] = &[
    "candor/v1/candor.proto",
    "candor/v1/raft.proto",
    "candor/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_root.join(p).display());
    }

    let mut compiler = protox::Compiler::new([&proto_root])?;
    // Source info keeps the proto comments: prost turns them into rustdoc,
    // and reflection clients (grpcurl describe) show them.
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;

    fs::write(
        out_dir.join("candor_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    // What the public API port reflects: only `candor.v1` (the Raft and admin
    // services live on the cluster port).
    let mut public = compiler.file_descriptor_set();
    public.file.retain(|f| f.package() == "candor.v1");
    fs::write(
        out_dir.join("candor_public_descriptor.bin"),
        prost::Message::encode_to_vec(&public),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        // A malformed request is the caller's fault: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
