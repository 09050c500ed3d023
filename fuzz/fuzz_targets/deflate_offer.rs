//! Arbitrary Sec-WebSocket-Extensions lines through permessage-deflate negotiation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wsedge::fuzzing::deflate_offer(data);
});
