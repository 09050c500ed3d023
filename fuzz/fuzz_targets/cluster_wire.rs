//! Arbitrary bytes as one payload from the cluster's broker.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| wsedge::fuzzing::cluster_wire(data));
