//! Arbitrary bytes in arbitrary chunkings through the sans-IO frame decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsedge::fuzzing::frame_parser(data));
