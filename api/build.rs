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
    answer_unimplemented_until_served(&out.join("cairn.machine.v1.rs"))?;
    Ok(())
}

/// MachineService methods machined does not implement yet: their server
/// trait methods get a default body that answers Unimplemented, so that an
/// RPC (its proto, apid's role for it, cairnctl's verb) can land before
/// machined's handler without breaking machined's build. Remove a name
/// here when machined implements it (the trait then requires it again).
const PENDING_IN_MACHINED: &[&str] = &[];

fn answer_unimplemented_until_served(
    generated: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut code = std::fs::read_to_string(generated)?;
    for method in PENDING_IN_MACHINED {
        // The server trait's declaration (the client's is `pub async fn`
        // and has a body).
        let decl = format!("        async fn {method}(");
        let at = code
            .match_indices(&decl)
            .map(|(i, _)| i)
            .find(|&i| !code[..i].ends_with("pub"))
            .ok_or_else(|| format!("no server trait method {method} in the generated code"))?;
        let end = at
            + code[at..]
                .find(';')
                .ok_or_else(|| format!("the declaration of {method} does not end"))?;
        code.replace_range(
            end..end + 1,
            " { Err(tonic::Status::unimplemented(\"not implemented by this node yet\")) }",
        );
    }
    std::fs::write(generated, code)?;
    Ok(())
}
