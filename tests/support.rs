//! Shared helpers for the gate: one helper per boundary, so an API change touches this file and
//! not every test.

use std::path::{Path, PathBuf};

use sim::scenario::{self, Scenario};
use sim::{RunOptions, RunReport, TransportKind};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// Every scenario file, loaded, sorted by name. Panics when the folder is empty or a file does not
/// parse: both mean the gate would check nothing.
#[track_caller]
pub fn all_scenarios() -> Vec<Scenario> {
    let dir = root().join("scenarios");
    let files = sim::catalog::files_in(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    assert!(!files.is_empty(), "no scenarios in {}: the gate would check nothing", dir.display());
    files.iter().map(|(_, path)| scenario::load(path).unwrap_or_else(|e| panic!("{e}"))).collect()
}

/// Runs a scenario through `transport` with its own seed; a run error is a test failure.
#[track_caller]
pub fn run(scenario: &Scenario, transport: TransportKind) -> RunReport {
    let options = RunOptions { transport, ..RunOptions::default() };
    sim::run(scenario, &options)
        .unwrap_or_else(|e| panic!("scenario {} could not run: {e}", scenario.name))
}

/// Whether the scenario is a canary (it must fail its expectations).
pub fn is_canary(scenario: &Scenario) -> bool {
    scenario.expects.iter().any(|e| e.value == scenario::Expect::Fail)
}

/// `None` when equal, else the first differing line of two texts, numbered.
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    let (mut la, mut lb) = (a.lines(), b.lines());
    for n in 1.. {
        match (la.next(), lb.next()) {
            (None, None) => return None,
            (x, y) if x == y => continue,
            (x, y) => {
                return Some(format!(
                    "line {n}:\n  left:  {}\n  right: {}",
                    x.unwrap_or("<end>"),
                    y.unwrap_or("<end>")
                ))
            }
        }
    }
    unreachable!()
}

/// `tests/fixtures/<relative>`.
pub fn fixture(relative: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(relative)
}

/// A scenario written in a test, read as if it were the file at `path` (which need not exist):
/// errors name that path, and rollout files it resumes from resolve next to it.
#[track_caller]
pub fn inline_scenario(path: &Path, text: &str) -> Scenario {
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    scenario::parse(&name, path, text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Runs a scenario with explicit options; a run error is a test failure.
#[track_caller]
pub fn run_with(scenario: &Scenario, options: &RunOptions) -> RunReport {
    sim::run(scenario, options)
        .unwrap_or_else(|e| panic!("scenario {} could not run: {e}", scenario.name))
}

/// What is wrong with a Mermaid `sequenceDiagram` (empty when well formed), checked apart from
/// the code that writes it: the header, every participant declared before use, balanced blocks,
/// and no character Mermaid reads as syntax inside a text (`;`, a `#` that starts no entity
/// code, `<`, `>`).
pub fn mermaid_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut lines = text.lines();
    if lines.next() != Some("sequenceDiagram") {
        problems.push("the first line is not `sequenceDiagram`".to_owned());
    }
    let mut declared: Vec<String> = Vec::new();
    let mut depth = 0i32;
    for (n, raw) in lines.enumerate() {
        let line = raw.trim();
        let n = n + 2;
        let text_part = |body: &str| body.split_once(':').map(|(_, t)| t.to_owned());
        let mut used: Vec<String> = Vec::new();
        let mut body_text = None;
        if let Some(rest) = line.strip_prefix("participant ") {
            let (id, alias) = rest.split_once(" as ").unwrap_or((rest, ""));
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                problems.push(format!("line {n}: participant id {id:?} is not a plain word"));
            }
            declared.push(id.to_owned());
            body_text = Some(alias.to_owned());
        } else if let Some(rest) = line.strip_prefix("Note ") {
            let Some((place, note)) = rest.split_once(':') else {
                problems.push(format!("line {n}: a note without text"));
                continue;
            };
            let who = place
                .trim_start_matches("over ")
                .trim_start_matches("right of ")
                .trim_start_matches("left of ");
            used.extend(who.split(',').map(|w| w.trim().to_owned()));
            body_text = Some(note.to_owned());
        } else if ["loop", "alt", "opt", "par", "rect", "critical", "break"]
            .iter()
            .any(|k| line == *k || line.starts_with(&format!("{k} ")))
        {
            depth += 1;
        } else if line == "end" {
            depth -= 1;
            if depth < 0 {
                problems.push(format!("line {n}: `end` closes no block"));
            }
        } else if let Some(arrow) =
            ["-->>", "->>", "--x", "-x", "-->", "->"].iter().find(|a| line.contains(**a))
        {
            let head = line.split_once(':').map_or(line, |(h, _)| h);
            let Some((from, to)) = head.split_once(arrow) else {
                problems.push(format!("line {n}: a message without an arrow"));
                continue;
            };
            used.push(from.trim().to_owned());
            used.push(to.trim().trim_start_matches(['+', '-']).to_owned());
            body_text = text_part(line);
            if body_text.is_none() {
                problems.push(format!("line {n}: a message without text"));
            }
        } else if !line.is_empty() {
            problems.push(format!("line {n}: not a statement this checker knows: {line:?}"));
        }
        for who in used {
            if !declared.contains(&who) {
                problems
                    .push(format!("line {n}: participant {who:?} is used before it is declared"));
            }
        }
        if let Some(body) = body_text {
            let mut rest = body.as_str();
            while let Some(at) = rest.find(['#', ';', '<', '>']) {
                let tail = &rest[at..];
                if let Some(entity) = tail.strip_prefix('#') {
                    let code: String = entity.chars().take_while(|c| *c != ';').collect();
                    let well = !code.is_empty()
                        && code.chars().all(|c| c.is_ascii_alphanumeric())
                        && entity.len() > code.len();
                    if !well {
                        problems.push(format!("line {n}: a `#` that starts no entity code"));
                        break;
                    }
                    rest = &entity[code.len() + 1..];
                } else {
                    problems.push(format!("line {n}: {:?} inside a text", &tail[..1]));
                    break;
                }
            }
        }
    }
    if depth != 0 {
        problems.push(format!("{depth} block(s) left open"));
    }
    problems
}

/// Where `value` breaks `schema` (empty when it conforms), for the JSON Schema keywords
/// `docs/run.schema.json` uses: `type` (one or a list), `enum`, `required`, `properties`,
/// `additionalProperties` (`false` or a schema), `items`, `minimum` and `$ref` into `$defs`.
pub fn schema_problems(schema: &serde_json::Value, value: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_schema(schema, schema, value, "$", &mut problems);
    problems
}

fn check_schema(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
    problems: &mut Vec<String>,
) {
    use serde_json::Value;
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/$defs/");
        match root.get("$defs").and_then(|d| d.get(name)) {
            Some(target) => check_schema(root, target, value, at, problems),
            None => problems.push(format!("{at}: unknown $ref {reference}")),
        }
        return;
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        };
        if !names.iter().any(|t| is(t)) {
            problems.push(format!("{at}: {value} is not of type {names:?}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            problems.push(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_i64), value.as_i64()) {
        if n < min {
            problems.push(format!("{at}: {n} is below {min}"));
        }
    }
    if let Some(object) = value.as_object() {
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            if !object.contains_key(key) {
                problems.push(format!("{at}: missing {key:?}"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            let path = format!("{at}.{key}");
            match (properties.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                (Some(sub), _) => check_schema(root, sub, item, &path, problems),
                (None, Some(Value::Bool(false))) => {
                    problems.push(format!("{at}: unexpected field {key:?}"))
                }
                (None, Some(sub)) if sub.is_object() => {
                    check_schema(root, sub, item, &path, problems)
                }
                _ => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check_schema(root, items, item, &format!("{at}[{i}]"), problems);
        }
    }
}
