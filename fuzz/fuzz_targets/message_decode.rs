//! Every message decoder: `ringcast_proto::message::Message::decode` on any
//! body (the five kinds share one postcard enum: Notify, SupervisorUpdate,
//! Join, Leave, Status).
//!
//! Checks: no panic; a body that decodes re-encodes to a body that decodes to
//! the same message (so a node forwarding what it accepted is understood).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast_proto::message::Message;

fuzz_target!(|data: &[u8]| {
    match Message::decode(data) {
        Ok(message) => {
            let _ = message.kind().name();
            let again = message.encode();
            assert!(again.len() <= data.len() + 16 * 1024);
            assert_eq!(
                Message::decode(&again).as_ref(),
                Ok(&message),
                "a decoded message does not survive encode + decode"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
