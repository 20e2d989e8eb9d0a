//! Two replicas, one Lease: only the leader reconciles; when it dies the
//! other takes over, and a replica that shuts down hands over at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;
use trellis::leader::LeaderOptions;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::until;

const NAME: &str = "ms-sample-v1s0";
const RECONCILES: &str = r#"trellis_reconciles_total{plugin="msdeploy"}"#;
const LEASE_DURATION: Duration = Duration::from_secs(4);

async fn replica(ns: &TestNamespace, identity: &str) -> TestHost {
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
    let leader = LeaderOptions {
        namespace: ns.name().to_owned(),
        name: "trellis-leader".into(),
        identity: identity.into(),
        lease_duration: LEASE_DURATION,
    };
    TestHost::start_in(ns, plugins, |mut o| {
        o.leader = Some(leader);
        o
    })
    .await
}

async fn eventually_held_by(ns: &TestNamespace, identity: &str) -> Lease {
    let leases = ns.api::<Lease>();
    until(&format!("the Lease to be held by {identity}"), SETTLE, || async {
        let lease = leases.get_opt("trellis-leader").await.map_err(|e| e.to_string())?;
        let holder = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone());
        match lease {
            Some(lease) if holder.as_deref() == Some(identity) => Ok(lease),
            _ => Err(format!("holder {holder:?}")),
        }
    })
    .await
}

async fn eventually_image(ns: &TestNamespace, image: &str) {
    let deployments = ns.api::<Deployment>();
    until(&format!("the Deployment to run {image}"), SETTLE, || async {
        let d = deployments
            .get_opt(NAME)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no Deployment yet")?;
        let current = d.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
        if current.as_deref() == Some(image) {
            Ok(())
        } else {
            Err(format!("image {current:?}"))
        }
    })
    .await;
}

async fn set_image(ns: &TestNamespace, image: &str) {
    let mut sample = msdeploy_sample();
    sample["spec"]["image"] = json!(image);
    apply_as_user(&msdeploy_api(ns), &sample).await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_follower_takes_over() {
    let ns = TestNamespace::create("leader").await;
    install_msdeploy_crd(&ns.client()).await;
    let a = replica(&ns, "replica-a").await;
    eventually_held_by(&ns, "replica-a").await;
    let b = replica(&ns, "replica-b").await;

    set_image(&ns, "example/ms:1").await;
    eventually_image(&ns, "example/ms:1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counter(&b.metrics, RECONCILES), 0.0, "the follower reconciled");
    assert!(counter(&a.metrics, RECONCILES) > 0.0);

    // The leader dies without releasing: the follower waits out the Lease.
    let died = Instant::now();
    let _ = a.kill();
    set_image(&ns, "example/ms:2").await;
    eventually_image(&ns, "example/ms:2").await;
    let lease = eventually_held_by(&ns, "replica-b").await;
    let took = died.elapsed();
    assert!(
        took >= LEASE_DURATION - Duration::from_millis(500),
        "took over after {took:?}, before the Lease expired"
    );
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);

    // A replica that shuts down hands the Lease over without waiting.
    let c = replica(&ns, "replica-c").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    let _ = b.stop().await;
    eventually_held_by(&ns, "replica-c").await;
    assert!(
        stopped.elapsed() < LEASE_DURATION,
        "handover took {:?}",
        stopped.elapsed()
    );
    set_image(&ns, "example/ms:3").await;
    eventually_image(&ns, "example/ms:3").await;
    assert!(counter(&c.metrics, RECONCILES) > 0.0);
}
