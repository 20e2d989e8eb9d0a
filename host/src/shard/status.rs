//! `trellis status`: which replica holds which shard, read from the Leases
//! (shard Leases, heartbeats and the leader Lease) of the host's namespace.
//! The table is built purely from the Leases read, so it is unit-tested.

use super::leases::{LEASE_LABEL, MEMBER_LEASE_PREFIX, SHARD_LEASE_PREFIX};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use std::fmt::Write as _;

/// Why the Leases could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the Leases of namespace {namespace}: {source}")]
pub struct StatusError {
    namespace: String,
    source: Box<kube::Error>,
}

/// Reads the Leases of `namespace` and prints who holds what (the leader
/// Lease is `leader_lease`).
pub async fn status(client: kube::Client, namespace: &str, leader_lease: &str) -> Result<String, StatusError> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let failed = |source| StatusError {
        namespace: namespace.to_owned(),
        source: Box::new(source),
    };
    let mut leases = api
        .list(&ListParams::default().labels(LEASE_LABEL))
        .await
        .map_err(failed)?
        .items;
    if let Some(leader) = api.get_opt(leader_lease).await.map_err(failed)? {
        leases.push(leader);
    }
    Ok(table(&leases, leader_lease, jiff::Timestamp::now()))
}

/// The report of `leases` at `now`: the leader, the replicas with the shards
/// each holds, then each shard with its holder and the age of its renewal.
pub fn table(leases: &[Lease], leader_lease: &str, now: jiff::Timestamp) -> String {
    let name = |l: &Lease| l.metadata.name.clone().unwrap_or_default();
    let holder = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty())
    };
    let age = |l: &Lease| {
        l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map_or_else(
            || "-".to_owned(),
            |t| format!("{}s ago", (now - t.0).get_seconds().max(0)),
        )
    };
    let mut shards: Vec<(u32, &Lease)> = leases
        .iter()
        .filter_map(|l| Some((name(l).strip_prefix(SHARD_LEASE_PREFIX)?.parse().ok()?, l)))
        .collect();
    shards.sort_by_key(|(shard, _)| *shard);
    let mut out = String::new();
    let leader = leases.iter().find(|l| name(l) == leader_lease);
    let _ = writeln!(
        out,
        "leader: {}",
        leader
            .and_then(|l| holder(l).map(|h| format!("{h} (renewed {})", age(l))))
            .unwrap_or_else(|| "none".into())
    );
    let _ = writeln!(out, "\nREPLICA{:<26}RENEWED     SHARDS", "");
    let mut members: Vec<&Lease> = leases
        .iter()
        .filter(|l| name(l).starts_with(MEMBER_LEASE_PREFIX))
        .collect();
    members.sort_by_key(|l| name(l));
    for member in members {
        let identity = holder(member).unwrap_or_default();
        let held: Vec<String> = shards
            .iter()
            .filter(|(_, l)| holder(l).as_deref() == Some(identity.as_str()))
            .map(|(s, _)| s.to_string())
            .collect();
        let _ = writeln!(out, "{identity:<33}{:<12}{}", age(member), held.join(","));
    }
    let _ = writeln!(out, "\nSHARD  HOLDER{:<27}RENEWED", "");
    for (shard, lease) in &shards {
        let _ = writeln!(
            out,
            "{shard:<7}{:<33}{}",
            holder(lease).unwrap_or_else(|| "-".into()),
            age(lease)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::api::ObjectMeta;

    fn lease(name: &str, holder: Option<&str>, renewed: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                renew_time: Some(MicroTime(jiff::Timestamp::from_second(renewed).unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn the_table_shows_the_leader_each_replicas_shards_and_each_shard() {
        let leases = [
            lease("trellis-shard-10", Some("b"), 98),
            lease("trellis-shard-2", Some("a"), 99),
            lease("trellis-shard-0", Some("a"), 100),
            lease("trellis-shard-1", None, 90),
            lease("trellis-member-b", Some("b"), 100),
            lease("trellis-member-a", Some("a"), 97),
            lease("trellis-leader", Some("a"), 100),
        ];
        let text = table(&leases, "trellis-leader", jiff::Timestamp::from_second(100).unwrap());
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines[0], "leader: a (renewed 0s ago)");
        let a = lines.iter().find(|l| l.starts_with("a ")).unwrap();
        assert!(a.ends_with("3s ago      0,2"), "{a}");
        let b = lines.iter().find(|l| l.starts_with("b ")).unwrap();
        assert!(b.ends_with("10"), "{b}");
        let shards: Vec<&str> = lines
            .iter()
            .skip_while(|l| !l.starts_with("SHARD"))
            .skip(1)
            .copied()
            .collect();
        assert_eq!(shards.len(), 4);
        assert!(shards[0].starts_with("0      a"), "{shards:?}");
        assert!(shards[1].starts_with("1      -"), "a free shard: {shards:?}");
        assert!(shards[3].starts_with("10     b"), "shards in numeric order: {shards:?}");
    }
}
