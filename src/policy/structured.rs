//! Structured files (YAML, TOML, JSON) as `serde_json::Value`s, for key-level rules and
//! metric files: dotted-key lookup, numeric leaves, and fields removed between two versions.

use serde_json::Value;

/// Parses a file's contents by its extension (`.yaml`/`.yml`, `.toml`, else JSON).
pub fn parse(path: &str, contents: &str) -> Result<Value, String> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        serde_norway::from_str(contents).map_err(|e| e.to_string())
    } else if lower.ends_with(".toml") {
        toml::from_str::<toml::Value>(contents)
            .map_err(|e| e.message().to_owned())
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
    } else {
        serde_json::from_str(contents).map_err(|e| e.to_string())
    }
}

/// The value at a dotted key (`model.objective`), if present.
pub fn lookup<'v>(value: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted
        .split('.')
        .try_fold(value, |current, part| current.as_object()?.get(part))
}

/// Every numeric leaf as (dotted name, value), in key order.
pub fn numeric_leaves(value: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    collect_numbers(value, String::new(), &mut out);
    out
}

fn collect_numbers(value: &Value, prefix: String, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.push((prefix, f));
            }
        }
        Value::Object(map) => {
            for (key, child) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                collect_numbers(child, name, out);
            }
        }
        _ => {}
    }
}

/// Every field path in `value`: object keys as `a.b`, and elements of arrays of named objects
/// (`[{name = "age"}, …]`, the usual shape of feature schemas) as `a[age]`.
pub fn field_paths(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_fields(value, String::new(), &mut out);
    out
}

fn collect_fields(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.push(path.clone());
                collect_fields(child, path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Some(name) = item.get("name").and_then(Value::as_str) {
                    let path = format!("{prefix}[{name}]");
                    out.push(path.clone());
                    collect_fields(item, path, out);
                }
            }
        }
        _ => {}
    }
}

/// Fields present in `base` and absent from `head`, outermost only (a removed object is
/// reported once, not once per field inside it).
pub fn removed_fields(base: &Value, head: &Value) -> Vec<String> {
    let head_fields: std::collections::BTreeSet<String> = field_paths(head).into_iter().collect();
    let mut removed: Vec<String> = Vec::new();
    for field in field_paths(base) {
        let inside_removed = removed
            .iter()
            .any(|r| field.starts_with(&format!("{r}.")) || field.starts_with(&format!("{r}[")));
        if !head_fields.contains(&field) && !inside_removed {
            removed.push(field);
        }
    }
    removed
}

/// A short rendering of a value for reasons (`"binary"`, `0.5`, `absent`).
pub fn show(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "absent".to_owned(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(other) => {
            let text = other.to_string();
            if text.len() > 60 {
                format!(
                    "{}…",
                    &text[..text.char_indices().nth(57).map_or(text.len(), |(i, _)| i)]
                )
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_yaml_toml_and_json_alike() {
        let yaml = parse("train.yaml", "model:\n  objective: binary\n").unwrap();
        let toml = parse("train.toml", "[model]\nobjective = \"binary\"\n").unwrap();
        let json = parse("train.json", r#"{"model": {"objective": "binary"}}"#).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(toml, json);
        assert_eq!(lookup(&json, "model.objective"), Some(&json!("binary")));
        assert_eq!(lookup(&json, "model.loss"), None);
        assert!(parse("x.json", "{").is_err());
    }

    #[test]
    fn numeric_leaves_are_dotted() {
        let value = json!({"auc": 0.9, "segments": {"eu": {"auc": 0.8}}, "name": "x"});
        assert_eq!(
            numeric_leaves(&value),
            vec![("auc".to_owned(), 0.9), ("segments.eu.auc".to_owned(), 0.8)]
        );
    }

    #[test]
    fn removed_fields_cover_objects_and_named_arrays() {
        let base =
            json!({"features": [{"name": "age", "type": "int"}, {"name": "zip"}], "version": 1});
        let head = json!({"features": [{"name": "age", "type": "int"}], "version": 1});
        assert_eq!(
            removed_fields(&base, &head),
            vec!["features[zip]".to_owned()]
        );
        let base = json!({"properties": {"a": {"type": "string"}, "b": {"type": "int"}}});
        let head = json!({"properties": {"a": {"type": "string"}}});
        assert_eq!(
            removed_fields(&base, &head),
            vec!["properties.b".to_owned()]
        );
        assert!(
            removed_fields(&head, &base).is_empty(),
            "additions remove nothing"
        );
    }
}
