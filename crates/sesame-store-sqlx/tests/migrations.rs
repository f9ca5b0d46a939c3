//! Expand/contract discipline, checked on the migration files themselves.
//!
//! Two releases must be able to run on one schema during a rolling deploy,
//! so a migration may only *expand* (create tables, add nullable or
//! defaulted columns, add indexes). Removing or renaming something the
//! previous release still reads (a *contract* step) is allowed only in a
//! later release, and only in a migration whose statement is preceded by a
//! `-- contract: <what the previous release no longer uses>` comment. This
//! test refuses anything else, and checks that every backend has the same
//! migration versions, so no database is left a step behind.

use std::collections::BTreeSet;
use std::path::Path;

const BACKENDS: &[&str] = &["sqlite", "postgres", "mysql"];

fn versions(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .map(|n| n.split('_').next().unwrap().to_string())
        .collect()
}

#[test]
fn every_backend_has_the_same_migration_versions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let first = versions(&root.join(BACKENDS[0]));
    assert!(!first.is_empty());
    for b in &BACKENDS[1..] {
        assert_eq!(
            versions(&root.join(b)),
            first,
            "{b} migrations differ from sqlite's"
        );
    }
}

/// Statements that break the previous release's queries.
fn is_contracting(stmt: &str) -> bool {
    let s = stmt.to_ascii_uppercase();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.starts_with("DROP ")
        || s.contains(" DROP COLUMN ")
        || s.contains(" DROP CONSTRAINT ")
        || s.contains(" RENAME ")
        || s.contains(" MODIFY ")
        || s.contains(" ALTER COLUMN ")
        || s.starts_with("TRUNCATE ")
        || (s.contains(" ADD COLUMN ") && s.contains(" NOT NULL") && !s.contains(" DEFAULT "))
}

#[test]
fn migrations_only_expand_unless_a_contract_step_is_declared() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut checked = 0;
    for b in BACKENDS {
        for entry in std::fs::read_dir(root.join(b)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let mut declared = false;
            let mut stmt = String::new();
            for line in text.lines() {
                let t = line.trim();
                if t.starts_with("-- contract:") {
                    declared = true;
                    continue;
                }
                if t.starts_with("--") {
                    continue;
                }
                stmt.push(' ');
                stmt.push_str(t.split("--").next().unwrap_or(""));
                if t.ends_with(';') {
                    assert!(
                        declared || !is_contracting(&stmt),
                        "{}: contracting statement without a `-- contract:` declaration:\n{stmt}",
                        path.display()
                    );
                    declared = false;
                    stmt.clear();
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10, "the scan saw the statements ({checked})");
}

#[test]
fn the_lint_recognises_contracting_statements() {
    for bad in [
        "DROP TABLE sessions;",
        "ALTER TABLE users DROP COLUMN email;",
        "ALTER TABLE users RENAME COLUMN email TO mail;",
        "ALTER TABLE sessions ADD COLUMN x INTEGER NOT NULL;",
        "ALTER TABLE sessions ALTER COLUMN ip TYPE TEXT;",
    ] {
        assert!(is_contracting(bad), "{bad}");
    }
    for ok in [
        "CREATE TABLE t (id INTEGER);",
        "ALTER TABLE sessions ADD COLUMN label TEXT;",
        "ALTER TABLE sessions ADD COLUMN n INTEGER NOT NULL DEFAULT 0;",
        "CREATE INDEX i ON t (id);",
    ] {
        assert!(!is_contracting(ok), "{ok}");
    }
}
