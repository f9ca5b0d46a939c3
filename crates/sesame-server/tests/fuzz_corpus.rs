//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the
//! same functions the fuzz targets call, so every input a fuzzer kept — and
//! every crash it found, once added — is an ordinary test in CI.

use sesame_server::fuzzing;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let d = std::fs::read(&p).unwrap();
            (p, d)
        })
        .collect()
}

fn replay(target: &str, f: fn(&[u8])) {
    let inputs = corpus(target);
    assert!(!inputs.is_empty(), "the {target} corpus is empty");
    for (path, data) in inputs {
        if let Err(e) = std::panic::catch_unwind(|| f(&data)) {
            panic!("{target}: {} fails: {e:?}", path.display());
        }
    }
}

#[test]
fn access_token_corpus() {
    replay("access_token", fuzzing::access_token);
}

#[test]
fn refresh_token_corpus() {
    replay("refresh_token", fuzzing::refresh_token);
}

#[test]
fn cookie_header_corpus() {
    replay("cookie_header", fuzzing::cookie_header);
}

#[test]
fn request_body_corpus() {
    replay("request_body", fuzzing::request_body);
}

/// Writes the seeds (run once with `--ignored`; the files are committed).
#[test]
#[ignore = "a generator, not a check: it writes seed files into fuzz/corpus; run by hand with --ignored"]
fn write_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (i, (target, data)) in fuzzing::seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i:02}")), data).unwrap();
    }
}
