//! Generates the gRPC stubs and the reflection descriptor set from `proto/` with a pure-Rust
//! protobuf compiler, so that building needs no system `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTO: &str = "proto/cams/flows/v1/flows.proto";
const ADMIN_PROTO: &str = "proto/cams/flows/v1/admin.proto";
const QUOTA_PROTO: &str = "proto/cams/flows/v1/quota.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-changed={ADMIN_PROTO}");
    println!("cargo:rerun-if-changed={QUOTA_PROTO}");
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::Compiler::new(["proto"])?
        .include_imports(true)
        .include_source_info(true)
        .open_files([PROTO, ADMIN_PROTO, QUOTA_PROTO])?
        .file_descriptor_set();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("flows_descriptor.bin"), fds.encode_to_vec())?;

    // Requests the decoder refuses are the caller's mistake (INVALID_ARGUMENT), not INTERNAL as
    // prost's own codec reports them: see src/grpc/codec.rs.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::grpc::codec::StrictCodec")
        .compile_fds(fds)?;
    Ok(())
}
