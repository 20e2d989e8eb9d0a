//! The committed ReconcilerPlugin CRD is what the Rust types generate.

#[test]
fn deploy_crd_is_generated_from_the_types() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/crds/trellis.dev_reconcilerplugins.yaml");
    let committed = std::fs::read_to_string(&path).expect("the CRD file");
    assert_eq!(
        committed,
        trellis::crd::crd_yaml(),
        "regenerate with `cargo run -p trellis -- crd > {}`",
        path.display()
    );
}
