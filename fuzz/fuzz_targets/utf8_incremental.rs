//! Random bytes cut at random points through the streaming UTF-8 validator.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsedge::fuzzing::utf8_incremental(data));
