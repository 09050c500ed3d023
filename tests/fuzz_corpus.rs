//! Replays every committed fuzz corpus file through the same library entry
//! points the `fuzz/` targets call, so CI checks the corpus on stable.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            run(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn frame_parser_corpus_replays_cleanly() {
    assert!(replay("frame_parser", wsedge::fuzzing::frame_parser) > 0);
}
