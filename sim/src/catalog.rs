//! The scenarios folder: which scenario files exist, and which names are close to a mistyped one.

use std::path::{Path, PathBuf};

/// The `.scn` files of `dir` as (name, path), sorted by name. Other files and sub-folders (such
/// as the rollout fixtures scenarios resume from) are not scenarios.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "scn") && path.is_file() {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                files.push((stem.to_owned(), path.clone()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Names within a small edit distance of `wanted`, or containing it, closest first.
pub fn close_matches(wanted: &str, names: &[String]) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|name| {
            let d = edit_distance(wanted, name);
            let limit = (wanted.len() / 3).max(2);
            (d <= limit || name.contains(wanted)).then_some((d, name))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n.clone()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] =
                if ca == *cb { previous } else { 1 + previous.min(row[j]).min(row[j + 1]) };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_matches_find_typos_and_substrings() {
        let names: Vec<String> =
            ["cold_start", "warm_identity", "ttl_expiry_reacquire", "ttl_expiry_as_shipped"]
                .map(String::from)
                .to_vec();
        assert_eq!(close_matches("cold_strat", &names), vec!["cold_start"]);
        assert_eq!(
            close_matches("ttl_expiry", &names),
            vec!["ttl_expiry_reacquire", "ttl_expiry_as_shipped"]
        );
        assert!(close_matches("zzz", &names).is_empty());
    }
}
