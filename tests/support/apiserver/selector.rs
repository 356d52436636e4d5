//! Label and field selectors, as the API server parses and applies them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resources::ResourceDef;

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`. An empty text selects everything.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| {
            let value = labels.get(&req.key);
            match &req.op {
                Op::Equals(want) => value == Some(want),
                Op::NotEquals(want) => value != Some(want),
                Op::In(set) => value.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => value.is_none_or(|v| !set.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// Splits on the commas that are not inside `( … )`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    let bad = |why: &str| format!("unable to parse requirement: {term:?}: {why}");
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        check_key(key).map_err(|why| bad(&why))?;
        return Ok(Requirement {
            key: key.to_string(),
            op: Op::DoesNotExist,
        });
    }
    if let Some((key, value)) = term.split_once("!=") {
        return equality(key, value, false).map_err(|why| bad(&why));
    }
    if let Some((key, value)) = term.split_once("==") {
        return equality(key, value, true).map_err(|why| bad(&why));
    }
    if let Some((key, value)) = term.split_once('=') {
        return equality(key, value, true).map_err(|why| bad(&why));
    }
    // `key in (…)`, `key notin (…)` or a bare `key`.
    let mut words = term.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().trim();
    let rest = words.next().unwrap_or_default().trim();
    check_key(key).map_err(|why| bad(&why))?;
    if rest.is_empty() {
        return Ok(Requirement {
            key: key.to_string(),
            op: Op::Exists,
        });
    }
    let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
        (true, list)
    } else if let Some(list) = rest.strip_prefix("in") {
        (false, list)
    } else {
        return Err(bad("expected one of =, ==, !=, in, notin"));
    };
    let inner = list
        .trim()
        .strip_prefix('(')
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(|| bad("expected a parenthesised list of values"))?;
    let mut values = Vec::new();
    for value in inner.split(',') {
        let value = value.trim();
        check_value(value).map_err(|why| bad(&why))?;
        values.push(value.to_string());
    }
    let op = if negated {
        Op::NotIn(values)
    } else {
        Op::In(values)
    };
    Ok(Requirement {
        key: key.to_string(),
        op,
    })
}

fn equality(key: &str, value: &str, equals: bool) -> Result<Requirement, String> {
    let key = key.trim();
    let value = value.trim();
    check_key(key)?;
    check_value(value)?;
    let op = if equals {
        Op::Equals(value.to_string())
    } else {
        Op::NotEquals(value.to_string())
    };
    Ok(Requirement {
        key: key.to_string(),
        op,
    })
}

fn check_key(key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn check_value(value: &str) -> Result<(), String> {
    let valid = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// A parsed `fieldSelector`: every term must hold.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<FieldTerm>);

#[derive(Debug, Clone)]
struct FieldTerm {
    path: String,
    equals: bool,
    value: String,
}

impl FieldSelector {
    /// Parses `metadata.name=x,metadata.namespace!=y` for `def`; a field the resource does not support is
    /// an error, as on the real API server.
    pub fn parse(text: &str, def: &ResourceDef) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (path, equals, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(format!("invalid selector: {term:?}; expected field=value"));
            };
            let path = path.trim();
            if !def.supports_field(path) {
                return Err(format!(
                    "field label not supported: {path} (for {}s)",
                    def.kind
                ));
            }
            terms.push(FieldTerm {
                path: path.to_string(),
                equals,
                value: value.trim().to_string(),
            });
        }
        Ok(FieldSelector(terms))
    }

    /// Whether `object` is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|term| {
            let mut current = object;
            for part in term.path.split('.') {
                current = current.get(part).unwrap_or(&Value::Null);
            }
            let actual = match current {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == term.value) == term.equals
        })
    }
}

/// `metadata.labels` of a stored object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
