//! permessage-deflate inflating under a size limit: arbitrary bytes and round trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsedge::fuzzing::deflate_inflate(data);
});
