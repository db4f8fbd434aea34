//! Generates the `inference` and `mmesh` gRPC clients and servers, and the ORCA load
//! report and out-of-band service (`xds.*.orca.v3`), from `proto/` with a vendored protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_protos(
            &["proto/grpc_service.proto", "proto/model_runtime.proto"],
            &["proto"],
        )?;
    // ORCA: maps in key order, so a report's encodings are deterministic.
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .btree_map(".")
        .compile_protos(
            &[std::path::PathBuf::from(
                "proto/xds/service/orca/v3/orca.proto",
            )],
            &[std::path::PathBuf::from("proto"), well_known],
        )?;
    Ok(())
}
