//! Generates the gRPC service of the controller listener from `proto/controller.proto`.

fn main() {
    println!("cargo:rerun-if-changed=proto/controller.proto");
    let fds = protox::compile(["proto/controller.proto"], ["proto"])
        .expect("proto/controller.proto compiles");
    tonic_prost_build::configure()
        .compile_fds(fds)
        .expect("gRPC code generation");
}
