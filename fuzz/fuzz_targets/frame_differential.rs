//! The same bytes through wsedge's frame decoder and tungstenite's parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsedge::fuzzing::frame_differential(data));
