//! A comparison as text: the terminal table, Markdown (what `docs/policies.md` holds) and JSON.
//! Every number is formatted here, from results in case order, so the same results always give
//! the same bytes.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::metrics::{Metric, Shape, Stat, METRICS};
use super::run::{Plan, Results};
use super::workload::PARAMS;
use super::Format;

/// The version of the JSON document's shape.
pub const SCHEMA_VERSION: u32 = 1;

/// `sim compare --params`: every workload parameter, its default and its meaning.
pub fn params_table() -> String {
    let width = PARAMS.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let default_width = PARAMS.iter().map(|p| p.default.len()).max().unwrap_or(0);
    let mut out = format!("{:<width$}  {:<default_width$}  meaning\n", "parameter", "default");
    for p in PARAMS {
        let _ = writeln!(out, "{:<width$}  {:<default_width$}  {}", p.name, p.default, p.doc);
    }
    out
}

/// The command that runs this comparison again (the options that change results only).
pub fn command_line(plan: &Plan) -> String {
    let mut line = format!(
        "{} -- compare --seed {} --sessions {}",
        crate::fuzz::cargo_run(),
        plan.seed,
        plan.sessions
    );
    line.push_str(" --policies");
    for policy in &plan.policies {
        let _ = write!(line, " {policy}");
    }
    if let Some(sweep) = &plan.sweep {
        let _ = write!(line, " --sweep {}={}", sweep.param.name, sweep.values.join(","));
    }
    for (name, text) in plan.workload.texts() {
        let default = PARAMS.iter().find(|p| p.name == name).map(|p| p.default);
        if default != Some(text) {
            let pair = format!("{name}={text}");
            let quoted = if pair.contains(' ') { format!("'{pair}'") } else { pair };
            let _ = write!(line, " --set {quoted}");
        }
    }
    line
}

/// What is printed before the run: the population, the sweep and the replay command.
pub fn preamble(plan: &Plan, format: Format) -> String {
    let sweep = plan.sweep.as_ref().map_or("none".to_owned(), |s| {
        format!("{} = {} ({})", s.param.name, s.values.join(", "), s.param.kind.unit())
    });
    let lines = [
        format!(
            "{} sessions per policy and sweep point ({} in all), base seed {}",
            plan.sessions,
            plan.cases(),
            plan.seed
        ),
        format!("sweep: {sweep}"),
        format!("policies: {}", join(plan.policies.iter().map(ToString::to_string), "  ")),
    ];
    match format {
        Format::Markdown => {
            let mut out = String::new();
            for line in lines {
                let _ = writeln!(out, "- {line}");
            }
            let _ = writeln!(out, "\nTo run it again:\n\n```sh\n{}\n```", command_line(plan));
            out
        }
        _ => {
            let mut out = String::new();
            for line in lines {
                let _ = writeln!(out, "compare: {line}");
            }
            let _ = writeln!(out, "replay: {}", command_line(plan));
            out
        }
    }
}

/// The terminal table: one block per metric, a row per policy, a column per sweep point; each
/// cell is the headline with the per-session spread `[p50 p95 p99]`.
pub fn table(plan: &Plan, results: &Results, replays: &[String]) -> String {
    let mut out = String::new();
    for block in blocks(plan, results) {
        let _ = writeln!(out, "\n== {} ({})", block.title, block.unit);
        let corner = plan.sweep.as_ref().map_or("policy", |s| s.param.name);
        let mut rows = vec![std::iter::once(corner.to_owned()).chain(block.columns).collect()];
        rows.extend(
            block.rows.into_iter().map(|(policy, cells)| {
                std::iter::once(policy).chain(cells).collect::<Vec<String>>()
            }),
        );
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in rows {
            let cells: Vec<String> =
                row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    }
    let _ = writeln!(out, "\n== Invariant violations, with their replays");
    if replays.is_empty() {
        let _ = writeln!(out, "none");
    }
    for replay in replays {
        let _ = writeln!(out, "{replay}");
    }
    out
}

/// The same tables in Markdown, each with its metric's definition.
pub fn markdown(plan: &Plan, results: &Results, replays: &[String]) -> String {
    let mut out = String::new();
    for block in blocks(plan, results) {
        let _ = writeln!(out, "\n#### {} ({})\n", block.title, block.unit);
        if !block.definition.is_empty() {
            let _ = writeln!(out, "{}.\n", capitalized(block.definition));
        }
        let corner = plan
            .sweep
            .as_ref()
            .map_or("policy".to_owned(), |s| format!("policy \\ {}", s.param.name));
        let _ = writeln!(out, "| {corner} | {} |", block.columns.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(block.columns.len()));
        for (policy, cells) in block.rows {
            let _ = writeln!(out, "| `{policy}` | {} |", cells.join(" | "));
        }
    }
    let _ = writeln!(out, "\n#### Invariant violations, with their replays\n");
    if replays.is_empty() {
        let _ = writeln!(out, "None.");
    }
    for replay in replays {
        let _ = writeln!(out, "- `{replay}`");
    }
    out
}

/// The JSON document: the plan, each metric's definition, and every cell's figures.
pub fn json(plan: &Plan, results: &Results, replays: &[String]) -> Value {
    let cells: Vec<Value> = results
        .points
        .iter()
        .zip(&results.cells)
        .flat_map(|(point, row)| {
            plan.policies.iter().zip(row).map(move |(policy, cell)| {
                let figures: serde_json::Map<String, Value> = METRICS
                    .iter()
                    .map(|m| (m.key.to_owned(), stat_json(&m.stat(&cell.sessions))))
                    .collect();
                json!({
                    "point": point.label,
                    "policy": policy.to_string(),
                    "sessions": cell.sessions.len(),
                    "turns": cell.sessions.iter().map(|s| s.turns).sum::<u64>(),
                    "resumes": cell.sessions.iter().map(|s| s.resumes).sum::<u64>(),
                    "violating_sessions": cell.violating.iter().map(|v| json!({
                        "seed": v.seed,
                        "summary": v.summary,
                    })).collect::<Vec<_>>(),
                    "metrics": figures,
                })
            })
        })
        .collect();
    json!({
        "schema": "agentsim-compare",
        "schema_version": SCHEMA_VERSION,
        "seed": plan.seed,
        "sessions": plan.sessions,
        "replay": command_line(plan),
        "workload": plan.workload.texts().into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v))).collect::<serde_json::Map<_, _>>(),
        "sweep": plan.sweep.as_ref().map(|s| json!({
            "param": s.param.name, "unit": s.param.kind.unit(), "values": s.values,
        })),
        "policies": plan.policies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "metrics": METRICS.iter().map(|m| json!({
            "key": m.key, "title": m.title, "unit": m.unit, "definition": m.definition,
            "headline": headline(m),
        })).collect::<Vec<_>>(),
        "results": cells,
        "violations": replays,
    })
}

/// What a metric's headline is.
fn headline(metric: &Metric) -> &'static str {
    match metric.shape {
        Shape::Ratio { .. } => "pooled over sessions",
        Shape::PerSession(_) => "mean over sessions",
        Shape::Samples(_) => "mean over turns",
    }
}

fn stat_json(stat: &Stat) -> Value {
    let round = |x: Option<f64>| x.map(|x| (x * 1000.0).round() / 1000.0);
    json!({
        "value": round(stat.value),
        "mean": round(stat.mean),
        "p50": round(stat.p50),
        "p95": round(stat.p95),
        "p99": round(stat.p99),
        "samples": stat.samples,
    })
}

/// One metric's (or the population's) block of cells.
struct Block {
    title: String,
    unit: String,
    definition: &'static str,
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
}

/// The population block, then one block per metric.
fn blocks(plan: &Plan, results: &Results) -> Vec<Block> {
    let columns: Vec<String> = results.points.iter().map(|p| p.label.clone()).collect();
    let rows_of = |cell_text: &dyn Fn(&super::run::Cell) -> String| -> Vec<(String, Vec<String>)> {
        plan.policies
            .iter()
            .enumerate()
            .map(|(i, policy)| {
                (policy.to_string(), results.cells.iter().map(|row| cell_text(&row[i])).collect())
            })
            .collect()
    };
    let mut blocks = vec![Block {
        title: "Population".into(),
        unit: "sessions measured / turns / resumes".into(),
        definition: "",
        columns: columns.clone(),
        rows: rows_of(&|cell| {
            let turns: u64 = cell.sessions.iter().map(|s| s.turns).sum();
            let resumes: u64 = cell.sessions.iter().map(|s| s.resumes).sum();
            format!("{} / {turns} / {resumes}", cell.sessions.len())
        }),
    }];
    blocks.push(Block {
        title: "Sessions that hit an invariant violation".into(),
        unit: "sessions; must be 0, each is listed below with its replay".into(),
        definition: "sessions in which the invariant checker or the reference model found core \
                     at fault (or the engine refused a step); they are left out of every other \
                     figure",
        columns: columns.clone(),
        rows: rows_of(&|cell| cell.violating.len().to_string()),
    });
    for metric in METRICS {
        let spread_of = headline(metric);
        blocks.push(Block {
            title: metric.title.into(),
            unit: format!("{}; {spread_of}, [p50 p95 p99]", metric.unit),
            definition: metric.definition,
            columns: columns.clone(),
            rows: rows_of(&|cell| cell_text(&metric.stat(&cell.sessions))),
        });
    }
    blocks
}

/// `headline [p50 p95 p99]`, or `-` with nothing to measure.
fn cell_text(stat: &Stat) -> String {
    let Some(value) = stat.value else { return "-".into() };
    let p = |x: Option<f64>| x.map_or("-".to_owned(), number);
    format!("{} [{} {} {}]", number(value), p(stat.p50), p(stat.p95), p(stat.p99))
}

/// A number for people: whole numbers as such, else 2 significant decimals at most.
pub fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn join(items: impl Iterator<Item = String>, separator: &str) -> String {
    items.collect::<Vec<_>>().join(separator)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}
