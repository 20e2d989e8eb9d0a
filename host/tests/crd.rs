//! The committed registration CRDs are what the Rust types generate.

fn assert_committed(file: &str, generated: String, kind: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/crds")
        .join(file);
    let committed = std::fs::read_to_string(&path).expect("the CRD file");
    assert_eq!(
        committed,
        generated,
        "regenerate with `cargo run -p trellis -- crd {kind} > {}`",
        path.display()
    );
}

#[test]
fn deploy_crds_are_generated_from_the_types() {
    assert_committed(
        "trellis.dev_clusterreconcilerplugins.yaml",
        trellis::crd::cluster_crd_yaml(),
        "cluster",
    );
    assert_committed(
        "trellis.dev_reconcilerplugins.yaml",
        trellis::crd::tenant_crd_yaml(),
        "tenant",
    );
}
