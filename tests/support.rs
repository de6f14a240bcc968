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

/// The shape of a reference rollout line, derived from the reference fixture
/// (`core/tests/fixtures/reference-rollout.jsonl`, a copy of `shared/fixtures/`), not from core's
/// writer: the item types it holds, and for each type (and each `event_msg`/`response_item` kind)
/// the payload fields every line of that kind carries.
#[derive(Debug)]
pub struct RolloutShape {
    /// `type` → the payload fields every line of it has in the fixture.
    pub types: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// (`event_msg` or `response_item`, payload `type`) → its payload fields.
    pub kinds: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<String>>,
}

/// Reads the shape off the reference fixture.
pub fn reference_shape() -> RolloutShape {
    use std::collections::{BTreeMap, BTreeSet};
    let path = root().join("core/tests/fixtures/reference-rollout.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut types: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut kinds: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("the fixture is JSON");
        let kind = value["type"].as_str().expect("a type").to_owned();
        let fields: BTreeSet<String> =
            value["payload"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        // Fields every line of the type has: the intersection over the fixture's lines.
        types
            .entry(kind.clone())
            .and_modify(|seen| seen.retain(|f| fields.contains(f)))
            .or_insert_with(|| fields.clone());
        if let Some(sub) = value["payload"]["type"].as_str() {
            kinds.insert((kind, sub.to_owned()), fields);
        }
    }
    RolloutShape { types, kinds }
}

/// Where a rollout breaks the reference shape (empty when every line conforms): each complete
/// line is `{timestamp, type, payload}` and nothing else, its type one the fixture has, its
/// payload with the fields the fixture's lines of that kind all have, its timestamp RFC 3339 UTC
/// with milliseconds; the first line is `session_meta`.
pub fn shape_problems(shape: &RolloutShape, bytes: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            problems.push(format!("line {n}: not JSON"));
            continue;
        };
        let Some(object) = value.as_object() else {
            problems.push(format!("line {n}: not an object"));
            continue;
        };
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        if keys != ["timestamp", "type", "payload"] {
            problems.push(format!("line {n}: keys {keys:?}, not [timestamp, type, payload]"));
        }
        let kind = value["type"].as_str().unwrap_or_default();
        if n == 1 && kind != "session_meta" {
            problems.push(format!("line 1 is {kind:?}, not session_meta"));
        }
        if !is_rfc3339_millis(value["timestamp"].as_str().unwrap_or_default()) {
            problems.push(format!(
                "line {n}: timestamp {} is not RFC 3339 UTC with ms",
                value["timestamp"]
            ));
        }
        let Some(required) = shape.types.get(kind) else {
            problems.push(format!("line {n}: type {kind:?} is not a reference item type"));
            continue;
        };
        let payload = value["payload"].as_object();
        let has = |field: &str| payload.is_some_and(|p| p.contains_key(field));
        for field in required {
            if !has(field) {
                problems.push(format!("line {n}: {kind} without {field:?}"));
            }
        }
        if let Some(sub) = value["payload"]["type"].as_str() {
            for field in shape.kinds.get(&(kind.to_owned(), sub.to_owned())).into_iter().flatten() {
                if !has(field) {
                    problems.push(format!("line {n}: {kind} {sub} without {field:?}"));
                }
            }
        }
    }
    problems
}

fn is_rfc3339_millis(text: &str) -> bool {
    let b = text.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ";
    b.len() == shape.len()
        && b.iter().zip(shape).all(|(x, s)| if *s == b'd' { x.is_ascii_digit() } else { x == s })
}

/// Whether a scenario writes rollout lines by other means than the lifecycle (a hand's
/// `damage`, a torn append, a rollout file it resumes from): the shape check reads only what the
/// lifecycle wrote.
pub fn writes_foreign_lines(scenario: &Scenario) -> bool {
    use sim::scenario::{CrashPoint, ResumeSource, Step};
    scenario.steps.iter().any(|s| {
        matches!(
            &s.value,
            Step::Damage { .. }
                | Step::Crash(CrashPoint::OnAppend(_))
                | Step::Resume { from: ResumeSource::File(_), .. }
        )
    })
}

/// The workspace the runtime tests sign in to.
pub const ACCOUNT: &str = "acct-1";

/// `sim serve` in this process on an ephemeral loopback port, with [`ACCOUNT`] and its token.
pub fn serve_for(token: &str) -> std::io::Result<sim::serve::Server> {
    sim::serve::Server::start(sim::serve::ServeOptions {
        accounts: vec![(ACCOUNT.to_owned(), token.to_owned())],
        ..sim::serve::ServeOptions::default()
    })
}

/// Signed in to [`ACCOUNT`] with `token`.
pub fn signed_in(token: &str) -> agentsim_core::Auth {
    agentsim_core::Auth::ChatGpt {
        binding: agentsim_core::Binding { account_id: ACCOUNT.into(), user_id: None },
        access_token: token.into(),
    }
}

/// One call of `sim serve`'s admin API, `POST {base_url}{path}`: the answer's body, or an error
/// naming the path, the status and the body.
pub async fn admin_post(
    client: &reqwest::Client,
    base_url: &str,
    path: &str,
    body: String,
) -> Result<String, String> {
    let url = format!("{base_url}{path}");
    let response = client.post(&url).body(body).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("{path}: {status} {text}"))
    }
}

/// A child process's output, line by line, through a channel: a reader that waits with
/// `recv_timeout` fails when the child stops printing instead of hanging the suite.
pub fn line_channel(
    output: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<std::io::Result<String>> {
    use std::io::BufRead as _;
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output).lines() {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
