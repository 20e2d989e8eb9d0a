//! The status the host writes on a parent: the plugin's status, its
//! conditions with transition times kept stable, and `observedGeneration`.

use crate::runtime::{Condition, Desired};
use serde_json::{Map, Value, json};

/// The current time as Kubernetes writes it (`2006-01-02T15:04:05Z`).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The full `status` to apply to `parent` after a successful reconcile.
///
/// Conditions keep their `lastTransitionTime` when their status did not
/// change, so an unchanged reconcile yields an identical status and the
/// apply is a no-op.
pub fn desired_status(parent: &Value, desired: &Desired, now: &str) -> Value {
    let mut status = match &desired.status {
        Some(Value::Object(status)) => status.clone(),
        _ => Map::new(),
    };
    let generation = parent["metadata"]["generation"].as_i64();
    status.insert(
        "conditions".into(),
        merge_conditions(parent, &desired.conditions, generation, now),
    );
    if let Some(generation) = generation {
        status.insert("observedGeneration".into(), json!(generation));
    }
    Value::Object(status)
}

/// The `status` to apply after a failed reconcile: the previous status
/// stays, `Ready` turns `False` with the reason.
pub fn failed_status(parent: &Value, reason: &str, message: &str, now: &str) -> Value {
    let ready = Condition {
        type_: "Ready".into(),
        status: "False".into(),
        reason: reason.into(),
        message: message.into(),
    };
    let generation = parent["metadata"]["generation"].as_i64();
    let mut conditions: Vec<Condition> = current_conditions(parent)
        .into_iter()
        .filter(|c| c.type_ != "Ready")
        .collect();
    conditions.push(ready);
    json!({ "conditions": merge_conditions(parent, &conditions, generation, now) })
}

fn current_conditions(parent: &Value) -> Vec<Condition> {
    parent["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| serde_json::from_value(c.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
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
