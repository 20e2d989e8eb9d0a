//! Checks of what a plugin's admission hooks return: the object `default`
//! gives back may differ from its input only in `metadata.labels`,
//! `metadata.annotations` and `spec`, and the objections of `validate` are
//! bounded before they reach the API server (and the user's terminal).

use super::error::RuntimeError;
use serde_json::Value;

/// Most objections of one `validate` passed on; the rest are counted.
pub const MAX_OBJECTIONS: usize = 20;
/// Longest objection passed on, in bytes.
const OBJECTION_BYTES: usize = 1024;

/// Metadata fields `default` may change.
const DEFAULTABLE_METADATA: &[&str] = &["labels", "annotations"];
/// Top-level fields `default` may change (besides metadata's above).
const DEFAULTABLE_FIELDS: &[&str] = &["spec"];

/// Parses what `default` returned for `before` and checks that only the
/// defaultable fields changed.
pub(crate) fn defaulted(plugin: &str, before: &Value, returned: &str) -> Result<Value, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidDefault {
        plugin: plugin.to_owned(),
        reason,
    };
    let after = match serde_json::from_str::<Value>(returned) {
        Ok(after @ Value::Object(_)) => after,
        Ok(_) => return Err(invalid("not a JSON object".into())),
        Err(e) => return Err(invalid(format!("not valid JSON: {e}"))),
    };
    if let Some(field) = forbidden_change(before, &after) {
        return Err(RuntimeError::ForbiddenDefault {
            plugin: plugin.to_owned(),
            field,
        });
    }
    Ok(after)
}

/// The first field outside the defaultable ones in which `after` differs
/// from `before`, as a dotted path.
fn forbidden_change(before: &Value, after: &Value) -> Option<String> {
    type Fields = serde_json::Map<String, Value>;
    let fields = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
    let changed = |b: &Fields, a: &Fields, allowed: &[&str]| {
        let mut keys: Vec<&String> = b
            .keys()
            .chain(a.keys())
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter().find(|k| b.get(*k) != a.get(*k)).cloned()
    };
    let (before, after) = (fields(Some(before)), fields(Some(after)));
    let mut allowed = DEFAULTABLE_FIELDS.to_vec();
    allowed.push("metadata");
    changed(&before, &after, &allowed).or_else(|| {
        changed(
            &fields(before.get("metadata")),
            &fields(after.get("metadata")),
            DEFAULTABLE_METADATA,
        )
        .map(|f| format!("metadata.{f}"))
    })
}

/// The objections passed on: at most [`MAX_OBJECTIONS`], each cut to a
/// kilobyte and to one line, with a last line counting the rest.
pub(crate) fn bounded_objections(mut objections: Vec<String>) -> Vec<String> {
    let dropped = objections.len().saturating_sub(MAX_OBJECTIONS);
    objections.truncate(MAX_OBJECTIONS);
    let mut out: Vec<String> = objections
        .into_iter()
        .map(|o| {
            let line = o.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut end = line.len().min(OBJECTION_BYTES);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line[..end].to_owned()
        })
        .filter(|o| !o.is_empty())
        .collect();
    if dropped > 0 {
        out.push(format!("and {dropped} more"));
    }
    if out.is_empty() {
        out.push("refused without a reason".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Value {
        json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"l": "1"}}, "spec": {"image": "nginx"}, "status": {"ok": true}})
    }

    #[test]
    fn labels_annotations_and_spec_may_change() {
        let mut after = object();
        after["spec"]["image"] = json!("nginx:latest");
        after["metadata"]["labels"]["added"] = json!("yes");
        after["metadata"]["annotations"] = json!({"a": "b"});
        let got = defaulted("p", &object(), &after.to_string()).unwrap();
        assert_eq!(got, after);
    }

    #[test]
    fn any_other_change_is_refused_naming_the_field() {
        let mut status = object();
        status["status"]["ok"] = json!(false);
        let mut name = object();
        name["metadata"]["name"] = json!("b");
        let mut kind = object();
        kind.as_object_mut().unwrap().remove("kind");
        for (after, field) in [(status, "status"), (name, "metadata.name"), (kind, "kind")] {
            match defaulted("p", &object(), &after.to_string()) {
                Err(RuntimeError::ForbiddenDefault { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_return_that_is_not_an_object_is_invalid() {
        for text in ["[1]", "not json"] {
            assert!(matches!(
                defaulted("p", &object(), text),
                Err(RuntimeError::InvalidDefault { .. })
            ));
        }
    }

    #[test]
    fn objections_are_bounded() {
        let many: Vec<String> = (0..30).map(|i| format!("problem\n{i}")).collect();
        let got = bounded_objections(many);
        assert_eq!(got.len(), MAX_OBJECTIONS + 1);
        assert_eq!(got[0], "problem 0");
        assert_eq!(got[MAX_OBJECTIONS], "and 10 more");
        assert_eq!(bounded_objections(vec!["x".repeat(5000)])[0].len(), OBJECTION_BYTES);
        assert_eq!(bounded_objections(Vec::new()), vec!["refused without a reason"]);
    }
}
