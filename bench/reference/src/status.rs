//! The status written on a parent, as the Trellis host writes it: the
//! plugin's status, its conditions (a `lastTransitionTime` that moves only
//! when the condition's status changes, `observedGeneration` on each) and
//! `observedGeneration`; and [`contains`], which decides whether a write
//! would change anything.

use serde_json::{Map, Value, json};
use trellis_sdk::{Condition, Response};

/// The current time as Kubernetes writes it (`2006-01-02T15:04:05Z`).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `status` after a successful reconcile. An unchanged reconcile
/// yields an identical status, so it is not written again.
pub fn desired(parent: &Value, response: &Response, now: &str) -> Value {
    let mut status = match response.status_json() {
        Some(Value::Object(status)) => status.clone(),
        _ => Map::new(),
    };
    let generation = parent["metadata"]["generation"].as_i64();
    status.insert(
        "conditions".into(),
        merge_conditions(parent, response.conditions(), generation, now),
    );
    if let Some(generation) = generation {
        status.insert("observedGeneration".into(), json!(generation));
    }
    Value::Object(status)
}

/// The `status` after a failed reconcile: the other conditions stay,
/// `Ready` turns `False` with the reason.
pub fn failed(parent: &Value, reason: &str, message: &str, now: &str) -> Value {
    let mut conditions: Vec<Condition> = parent["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] != "Ready")
        .map(|c| Condition {
            type_: text(&c["type"]),
            status: text(&c["status"]),
            reason: text(&c["reason"]),
            message: text(&c["message"]),
        })
        .collect();
    conditions.push(Condition {
        type_: "Ready".into(),
        status: "False".into(),
        reason: reason.into(),
        message: message.into(),
    });
    let generation = parent["metadata"]["generation"].as_i64();
    json!({ "conditions": merge_conditions(parent, &conditions, generation, now) })
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn merge_conditions(parent: &Value, conditions: &[Condition], generation: Option<i64>, now: &str) -> Value {
    let previous = parent["status"]["conditions"].as_array();
    let merged = conditions
        .iter()
        .map(|c| {
            let before = previous.and_then(|p| p.iter().find(|old| old["type"] == c.type_.as_str()));
            let since = match before {
                Some(old) if old["status"] == c.status.as_str() => old["lastTransitionTime"].as_str().unwrap_or(now),
                _ => now,
            };
            let mut condition = json!({
                "type": c.type_,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
            });
            if let Some(generation) = generation {
                condition["observedGeneration"] = json!(generation);
            }
            condition
        })
        .collect();
    Value::Array(merged)
}

/// Whether every field of `desired` is in `observed` with the same value.
/// Lists must match element by element (the server adds defaults inside
/// elements, never elements). Empty maps and lists match absent fields.
pub fn contains(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (Value::Object(observed), Value::Object(desired)) => {
            desired.iter().all(|(key, want)| match observed.get(key) {
                Some(have) => contains(have, want),
                None => is_empty(want),
            })
        }
        (Value::Array(observed), Value::Array(desired)) => {
            observed.len() == desired.len() && observed.iter().zip(desired).all(|(have, want)| contains(have, want))
        }
        (Value::Null, want) => is_empty(want),
        (have, want) => have == want,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_reconcile_yields_the_status_already_there() {
        let parent = json!({"metadata": {"generation": 2}});
        let response = Response::new()
            .status(&json!({"phase": "Running"}))
            .condition(Condition::ready(true, "ReplicasReady", "3/3"));
        let first = desired(&parent, &response, "2026-01-01T00:00:00Z");
        assert_eq!(first["observedGeneration"], 2);
        assert_eq!(first["conditions"][0]["observedGeneration"], 2);
        let written = json!({"metadata": {"generation": 2}, "status": first});
        let again = desired(&written, &response, "2026-01-01T00:05:00Z");
        assert!(contains(&written["status"], &again), "transition time kept");
        let failed = failed(&written, "ApplyInvalid", "no", "2026-01-01T00:06:00Z");
        assert!(!contains(&written["status"], &failed));
        assert_eq!(failed["conditions"][0]["status"], "False");
    }

    #[test]
    fn server_defaults_are_contained_edits_are_not() {
        let desired = json!({"spec": {"ports": [{"port": 80}], "selector": {}}});
        let mut observed = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}});
        assert!(contains(&observed, &desired));
        observed["spec"]["ports"][0]["port"] = json!(81);
        assert!(!contains(&observed, &desired));
    }
}
