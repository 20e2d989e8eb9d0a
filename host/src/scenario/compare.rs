//! Comparing what a plugin rendered with what a scenario expects: the
//! expectation is a subset of the actual object (fields it leaves out may
//! be anything), lists must have the same length and compare item by item.
//! Every difference is reported with the path of the field it is at.

use serde_json::Value;
use std::fmt;

/// One difference between the expected and the rendered output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Where: `children[apps/v1 Deployment web].spec.replicas`.
    pub path: String,
    /// What differs there.
    pub difference: Difference,
}

/// How a field differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Both are set, to different values (each as JSON).
    Value { expected: String, actual: String },
    /// The expected field is not in the output.
    Missing { expected: String },
    /// A list has another length than expected.
    Length { expected: usize, actual: usize },
    /// An expected object is not in the output.
    MissingObject,
    /// The output holds an object the scenario does not expect.
    UnexpectedObject,
    /// The output has another kind of value (a list for an object, ...).
    Shape {
        expected: &'static str,
        actual: &'static str,
    },
    /// The reconcile was expected to fail, or not, or with another message.
    Outcome { expected: String, actual: String },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.difference {
            Difference::Value { expected, actual } => write!(f, "{path}: expected {expected}, got {actual}"),
            Difference::Missing { expected } => write!(f, "{path}: expected {expected}, not set"),
            Difference::Length { expected, actual } => {
                write!(f, "{path}: expected {expected} items, got {actual}")
            }
            Difference::MissingObject => write!(f, "{path}: expected, not rendered"),
            Difference::UnexpectedObject => write!(f, "{path}: rendered, not expected"),
            Difference::Shape { expected, actual } => write!(f, "{path}: expected {expected}, got {actual}"),
            Difference::Outcome { expected, actual } => write!(f, "{path}: expected {expected}, got {actual}"),
        }
    }
}

/// The differences of `actual` from `expected` at `path`; none when every
/// field `expected` sets has the same value in `actual`.
pub fn subset(path: &str, expected: &Value, actual: &Value) -> Vec<Mismatch> {
    let mut found = Vec::new();
    walk(path, expected, actual, &mut found);
    found
}

fn walk(path: &str, expected: &Value, actual: &Value, found: &mut Vec<Mismatch>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, want) in want {
                let at = field_path(path, key);
                match have.get(key) {
                    // `null` expects the field to be absent.
                    None if want.is_null() => {}
                    None => found.push(Mismatch {
                        path: at,
                        difference: Difference::Missing {
                            expected: want.to_string(),
                        },
                    }),
                    Some(have) => walk(&at, want, have, found),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                found.push(Mismatch {
                    path: path.to_owned(),
                    difference: Difference::Length {
                        expected: want.len(),
                        actual: have.len(),
                    },
                });
            }
            for (index, (want, have)) in want.iter().zip(have).enumerate() {
                walk(&format!("{path}[{index}]"), want, have, found);
            }
        }
        (want, have) if shape(want) != shape(have) && (want.is_object() || want.is_array()) => found.push(Mismatch {
            path: path.to_owned(),
            difference: Difference::Shape {
                expected: shape(want),
                actual: shape(have),
            },
        }),
        (want, have) if !same_scalar(want, have) => found.push(Mismatch {
            path: path.to_owned(),
            difference: Difference::Value {
                expected: want.to_string(),
                actual: have.to_string(),
            },
        }),
        _ => {}
    }
}

/// Numbers compare by value (`2` and `2.0` are the same replica count).
fn same_scalar(want: &Value, have: &Value) -> bool {
    match (want.as_f64(), have.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => want == have,
    }
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `a.b`, or `a["x.y/z"]` for a key that is not a plain word (labels,
/// annotations).
fn field_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_subset_matches() {
        let actual = json!({"spec": {"replicas": 2, "image": "nginx"}, "extra": true});
        assert!(subset("x", &json!({"spec": {"replicas": 2}}), &actual).is_empty());
        assert!(subset("x", &json!({"spec": {"replicas": 2.0}}), &actual).is_empty());
    }

    #[test]
    fn a_changed_field_is_named_with_both_values() {
        let found = subset(
            "child",
            &json!({"spec": {"replicas": 3}}),
            &json!({"spec": {"replicas": 2}}),
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), "child.spec.replicas: expected 3, got 2");
    }

    #[test]
    fn missing_fields_lists_and_shapes_are_reported() {
        let expected = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "ports": [{"port": 80}, {"port": 443}],
            "spec": {"template": {}},
        });
        let actual = json!({"metadata": {"labels": {}}, "ports": [{"port": 8080}], "spec": "x"});
        let lines: Vec<String> = subset("s", &expected, &actual)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                r#"s.metadata.labels["app.kubernetes.io/name"]: expected "web", not set"#,
                "s.ports: expected 2 items, got 1",
                "s.ports[0].port: expected 80, got 8080",
                "s.spec: expected an object, got a string",
            ]
        );
    }

    #[test]
    fn null_expects_the_field_to_be_absent() {
        assert!(subset("s", &json!({"gone": null}), &json!({})).is_empty());
        assert_eq!(subset("s", &json!({"gone": null}), &json!({"gone": 1})).len(), 1);
    }
}
