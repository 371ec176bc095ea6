//! The OpenAPI document read back: the structural checks a client generator relies on, and a
//! check of real answers against the schemas the document gives them (the subset of JSON Schema
//! the document uses: `$ref`, `type` with `null`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `oneOf`, `anyOf`, `allOf`), including properties
//! the server sends but the document does not describe.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use serde_json::Value;

/// Every problem of the document itself: a `$ref` that names no schema, a JSON body without a
/// schema, an operation without a success answer or a summary, a path parameter not declared.
pub fn document_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let schemas = &doc["components"]["schemas"];
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in refs {
        match r.strip_prefix("#/components/schemas/") {
            Some(name) if schemas.get(name).is_some() => {}
            _ => problems.push(format!("$ref {r} names no schema")),
        }
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let here = format!("{method} {path}");
            if op["summary"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{here}: no summary"));
            }
            let responses = op["responses"].as_object().expect("responses");
            if !responses.keys().any(|k| k.starts_with('2')) {
                problems.push(format!("{here}: no success answer"));
            }
            for (status, answer) in responses {
                for (media, content) in answer["content"].as_object().into_iter().flatten() {
                    if media.contains("json") && content.get("schema").is_none() {
                        problems.push(format!("{here}: {status} {media} has no schema"));
                    }
                }
            }
            if !responses.keys().any(|k| k.starts_with('4')) {
                problems.push(format!("{here}: no error answer"));
            }
            if let Some(body) = op.get("requestBody") {
                for (media, content) in body["content"].as_object().into_iter().flatten() {
                    if content.get("schema").is_none() {
                        problems.push(format!("{here}: request {media} has no schema"));
                    }
                }
            }
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for name in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                if !declared.contains(&name) {
                    problems.push(format!("{here}: path parameter {name} not declared"));
                }
            }
        }
    }
    problems
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The schema the document gives the `status` answer of `method path` as JSON.
pub fn answer_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let schema = &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} {status}: no JSON schema in the document");
    schema
}

/// Where `value` breaks `schema` (empty when it conforms), each with its JSON path.
pub fn mismatches(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, value, "$", &mut out);
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local $ref");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// Property names `schema` allows on an object: its own, and those of its `allOf` parts and
/// `oneOf` / `anyOf` options (a tagged enum spreads its fields over its options).
fn known_properties<'a>(doc: &'a Value, schema: &'a Value, out: &mut Vec<&'a str>) -> bool {
    let schema = resolve(doc, schema);
    let mut any = false;
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        out.extend(properties.keys().map(String::as_str));
        any = true;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
            any |= known_properties(doc, part, out);
        }
    }
    any
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    check_part(doc, schema, value, at, out, true);
}

/// Checks `value` against `schema`; `whole` says whether `schema` is all there is to say of
/// the value (not one part of an `allOf`), so that a property no part names is reported.
fn check_part(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>, whole: bool) {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check_part(doc, part, value, at, out, false);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options
                .iter()
                .filter(|o| {
                    let mut found = Vec::new();
                    check_part(doc, o, value, at, &mut found, false);
                    found.is_empty()
                })
                .count();
            let ok = if key == "oneOf" { fits == 1 } else { fits >= 1 };
            if !ok {
                out.push(format!("{at}: {fits} of the {} {key} options fit {value}", options.len()));
            }
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        out.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        out.push(format!("{at}: {value} is none of {options:?}"));
    }
    if let Value::Object(map) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                out.push(format!("{at}: required {name} is missing"));
            }
        }
        let mut known = Vec::new();
        let described = known_properties(doc, schema, &mut known);
        for (name, item) in map {
            if let Some(property) = properties.and_then(|p| p.get(name)) {
                check_part(doc, property, item, &format!("{at}.{name}"), out, true);
            } else if let Some(extra @ Value::Object(_)) = schema.get("additionalProperties") {
                check_part(doc, extra, item, &format!("{at}.{name}"), out, true);
            } else if whole && described && !known.contains(&name.as_str()) {
                // The server sends what the document does not describe.
                out.push(format!("{at}: {name} is not in the schema"));
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_part(doc, item_schema, item, &format!("{at}[{i}]"), out, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"components": {"schemas": {"Thing": {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "string"}, "n": {"type": ["integer", "null"]}, "kind": {"type": "string", "enum": ["a", "b"]}}
        }}}})
    }

    #[test]
    fn the_checker_catches_what_it_claims_to() {
        let doc = doc();
        let schema = json!({"type": "array", "items": {"$ref": "#/components/schemas/Thing"}});
        assert!(mismatches(&doc, &schema, &json!([{"id": "x", "n": null, "kind": "a"}])).is_empty());
        let found = mismatches(&doc, &schema, &json!([{"n": 1}, {"id": 3}, {"id": "y", "kind": "c", "extra": 1}]));
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.iter().any(|m| m.contains("required id")), "{found:?}");
        assert!(found.iter().any(|m| m.contains("is not [\"string\"]")), "{found:?}");
        assert!(found.iter().any(|m| m.contains("none of")), "{found:?}");
        assert!(found.iter().any(|m| m.contains("extra is not in the schema")), "{found:?}");
    }
}
