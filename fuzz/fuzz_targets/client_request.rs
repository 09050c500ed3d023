//! Arbitrary bytes as one client JSON message on `/ws`, and the answers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsedge::fuzzing::client_request(data));
