//! Arbitrary bytes as an HTTP upgrade request, and the responses to it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsedge::fuzzing::handshake(data);
});
