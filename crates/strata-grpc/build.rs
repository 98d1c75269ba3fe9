//! Compiles `proto/` with protox (pure Rust): no `protoc` is needed on any machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not compile time: a build-script binary can be reused from a shared
    // target directory by a checkout at another path.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir).join("../../proto");
    let files = [
        root.join("containerd/types/mount.proto"),
        root.join("containerd/types/descriptor.proto"),
        root.join("containerd/services/snapshots/v1/snapshots.proto"),
        root.join("containerd/services/diff/v1/diff.proto"),
        root.join("containerd/services/content/v1/content.proto"),
        root.join("containerd/services/introspection/v1/introspection.proto"),
        root.join("containerd/services/leases/v1/leases.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        // Labels as ordered maps, the domain's own type: no rehashing on the way in or out.
        .btree_map(".")
        // The List answer is our own type: a server appends infos already encoded from the
        // stored records (src/list_wire.rs).
        .extern_path(
            ".containerd.services.snapshots.v1.ListSnapshotsResponse",
            "crate::list_wire::ListSnapshotsResponse",
        )
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
