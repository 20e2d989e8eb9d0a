//! How the cluster gets from the members it has to the members it should
//! have, one member at a time: grow by one once every member is ready;
//! shrink by removing the last member from the cluster first (a Job running
//! `etcdctl member remove`), then its pod. Version changes roll through the
//! StatefulSet's `RollingUpdate`, which replaces one pod at a time.

use crate::spec::Checked;
use trellis_sdk::k8s_openapi::api::apps::v1::StatefulSet;
use trellis_sdk::k8s_openapi::api::batch::v1::Job;

/// What the StatefulSet is doing now, as observed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    pub replicas: i32,
    pub ready: i32,
    /// Every pod runs the current template and is ready.
    pub settled: bool,
    /// The etcd version of the pod template.
    pub version: Option<String>,
}

impl Observed {
    pub fn of(set: &StatefulSet) -> Self {
        let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let status = set.status.clone().unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        let caught_up = status.observed_generation.unwrap_or(0) >= set.metadata.generation.unwrap_or(0);
        let rolled = status.update_revision.is_none() || status.current_revision == status.update_revision;
        let settled = caught_up && rolled && status.replicas == replicas && ready == replicas;
        let version = set
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.as_deref())
            .and_then(|image| image.rsplit_once(":v"))
            .map(|(_, version)| version.to_owned());
        Self {
            replicas,
            ready,
            settled,
            version,
        }
    }
}

/// The next step towards the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The StatefulSet's replicas for this step.
    pub replicas: i32,
    /// The ordinal of a member to remove from the cluster first, if any.
    pub remove_member: Option<i32>,
    /// `Creating`, `Scaling`, `Upgrading`, `Progressing` (waiting for
    /// members to be ready), `Running` or `Paused`.
    pub phase: &'static str,
}

impl Observed {
    /// The version every member runs: the template's once rolled out, else
    /// what was last known (`known`, from the parent's status).
    pub fn current_version(&self, known: Option<&str>) -> Option<String> {
        if self.settled {
            self.version.clone()
        } else {
            known.map(str::to_owned)
        }
    }
}

/// Plans the next step. `known` is the version every member ran at the
/// last reconcile (none while creating); `removal_done` says whether the
/// Job removing the member with the given ordinal has succeeded.
pub fn plan(
    spec: &Checked,
    observed: Option<&Observed>,
    known: Option<&str>,
    removal_done: impl Fn(i32) -> bool,
) -> Plan {
    let Some(observed) = observed else {
        // A new cluster: its first members bootstrap together.
        return Plan {
            replicas: spec.size,
            remove_member: None,
            phase: "Creating",
        };
    };
    let hold = |phase| Plan {
        replicas: observed.replicas,
        remove_member: None,
        phase,
    };
    if spec.paused {
        return hold("Paused");
    }
    let last = observed.replicas - 1;
    if spec.size < observed.replicas {
        if removal_done(last) {
            return Plan {
                replicas: last,
                remove_member: Some(last),
                phase: "Scaling",
            };
        }
        // Only a healthy cluster gives up a member.
        return Plan {
            remove_member: observed.settled.then_some(last),
            ..hold("Scaling")
        };
    }
    if !observed.settled {
        let phase = match known {
            None => "Creating",
            Some(known) if observed.version.as_deref() != Some(known) => "Upgrading",
            Some(_) => "Progressing",
        };
        return hold(phase);
    }
    if spec.size > observed.replicas {
        return Plan {
            replicas: observed.replicas + 1,
            remove_member: None,
            phase: "Scaling",
        };
    }
    if observed.version.as_deref() != Some(spec.version.as_str()) {
        return hold("Upgrading");
    }
    hold("Running")
}

/// Whether an observed Job has completed successfully.
pub fn succeeded(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn spec(size: i32) -> Checked {
        Spec {
            size,
            version: Some("3.5.17".into()),
            repository: None,
            paused: false,
        }
        .checked()
        .unwrap()
    }

    const KNOWN: Option<&str> = Some("3.5.17");

    fn settled(replicas: i32) -> Observed {
        Observed {
            replicas,
            ready: replicas,
            settled: true,
            version: Some("3.5.17".into()),
        }
    }

    #[test]
    fn a_new_cluster_bootstraps_every_member() {
        assert_eq!(plan(&spec(3), None, None, |_| false).replicas, 3);
    }

    #[test]
    fn growing_adds_one_member_once_all_are_ready() {
        assert_eq!(plan(&spec(5), Some(&settled(3)), KNOWN, |_| false).replicas, 4);
        let busy = Observed {
            ready: 3,
            settled: false,
            ..settled(4)
        };
        assert_eq!(plan(&spec(5), Some(&busy), KNOWN, |_| false).replicas, 4);
    }

    #[test]
    fn shrinking_removes_the_member_before_its_pod() {
        let first = plan(&spec(3), Some(&settled(5)), KNOWN, |_| false);
        assert_eq!((first.replicas, first.remove_member), (5, Some(4)));
        let then = plan(&spec(3), Some(&settled(5)), KNOWN, |ordinal| ordinal == 4);
        assert_eq!((then.replicas, then.remove_member), (4, Some(4)));
    }

    #[test]
    fn a_new_version_is_upgrading_until_rolled() {
        let old = Observed {
            version: Some("3.5.16".into()),
            ..settled(3)
        };
        assert_eq!(plan(&spec(3), Some(&old), KNOWN, |_| false).phase, "Upgrading");
        assert_eq!(plan(&spec(3), Some(&settled(3)), KNOWN, |_| false).phase, "Running");
    }
}
