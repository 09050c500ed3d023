//! One connection's state machine through a random life (structure-aware:
//! the input is decoded into a configuration and a sequence of operations).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsedge::fuzzing::connection(data));
