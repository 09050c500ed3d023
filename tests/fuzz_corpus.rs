//! Replays every committed fuzz input through the same library entry
//! points the `fuzz/` targets call, so CI checks them on stable with no
//! fuzzer installed: for each target, every file of `fuzz/corpus/<target>/`
//! (the seed and minimized corpus), `fuzz/regressions/<target>/` (minimized
//! crashes, kept forever) and `fuzz/artifacts/<target>/` (what a local
//! fuzzing run just found, if any).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A harness: takes one input, panics if an invariant breaks.
type Harness = fn(&[u8]);

/// Every fuzz target and its harness.
const TARGETS: [(&str, Harness); 9] = [
    ("frame_parser", wsedge::fuzzing::frame_parser),
    ("frame_differential", wsedge::fuzzing::frame_differential),
    ("handshake", |data| {
        wsedge::fuzzing::handshake(data);
    }),
    ("utf8_incremental", wsedge::fuzzing::utf8_incremental),
    ("connection", wsedge::fuzzing::connection),
    ("client_request", wsedge::fuzzing::client_request),
    ("cluster_wire", wsedge::fuzzing::cluster_wire),
    ("deflate_offer", wsedge::fuzzing::deflate_offer),
    ("deflate_inflate", wsedge::fuzzing::deflate_inflate),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files directly in `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `<kind>/<target>` through `run`; returns how many ran
/// and the failures with their panic messages.
fn replay(kind: &str, target: &str, run: Harness) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut n = 0;
    for path in files(&fuzz_dir().join(kind).join(target)) {
        let data = std::fs::read(&path).unwrap();
        n += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", path.display()));
        }
    }
    (n, failures)
}

fn replay_target(target: &str) {
    let (_, run) = TARGETS.iter().find(|(t, _)| *t == target).unwrap();
    let (corpus, mut failures) = replay("corpus", target, *run);
    assert!(corpus > 0, "fuzz/corpus/{target} has no seed inputs");
    for kind in ["regressions", "artifacts"] {
        failures.extend(replay(kind, target, *run).1);
    }
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn frame_parser_corpus_replays_cleanly() {
    replay_target("frame_parser");
}

#[test]
fn frame_differential_corpus_replays_cleanly() {
    replay_target("frame_differential");
}

#[test]
fn handshake_corpus_replays_cleanly() {
    replay_target("handshake");
}

#[test]
fn utf8_incremental_corpus_replays_cleanly() {
    replay_target("utf8_incremental");
}

#[test]
fn connection_corpus_replays_cleanly() {
    replay_target("connection");
}

#[test]
fn client_request_corpus_replays_cleanly() {
    replay_target("client_request");
}

#[test]
fn cluster_wire_corpus_replays_cleanly() {
    replay_target("cluster_wire");
}

#[test]
fn deflate_offer_corpus_replays_cleanly() {
    replay_target("deflate_offer");
}

#[test]
fn deflate_inflate_corpus_replays_cleanly() {
    replay_target("deflate_inflate");
}

#[test]
fn every_fuzz_target_is_replayed() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let declared = manifest.matches("[[bin]]").count();
    assert_eq!(
        declared,
        TARGETS.len(),
        "fuzz/Cargo.toml targets vs TARGETS"
    );
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target} is not a fuzz target"
        );
    }
}
