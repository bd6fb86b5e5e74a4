//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so
//! the build needs no system `protoc`, and generates tonic/prost code into
//! OUT_DIR. The descriptor set is also written out for reflection and for the
//! committed breaking-change lock (`api/lock.binpb`).
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/cairn/machine/v1/machine.proto",
    "proto/cairn/security/v1/security.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptor.binpb"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
