//! The "hub-lite" protocol shared by the peer servers' `/ws` route: the
//! subset of wsedge's hub protocol that `wsedge-bench fanout --publish-via
//! ws` speaks, so the same client measures broadcast on every server.
//!
//! Client → server (JSON text frames):
//! `{"type":"subscribe","channel":"c","id":1}` → `{"type":"ack","id":1}`;
//! `{"type":"publish","channel":"c","data":<json>,"id":2}` → every
//! subscriber of `c` gets `{"type":"message","channel":"c","data":<json>}`
//! (built once per publish, shared by all subscribers), and the publisher an
//! ack if it gave an id. Anything else is ignored.

use serde::Deserialize;
use serde_json::value::RawValue;

/// One client request.
#[derive(Deserialize)]
pub struct Request<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub channel: String,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    #[serde(default)]
    pub id: Option<u64>,
}

/// Parses a request; `None` for anything that is not one.
pub fn parse(text: &str) -> Option<Request<'_>> {
    serde_json::from_str(text).ok()
}

/// The `message` frame's text for a publish (the data is copied verbatim).
pub fn message_text(channel: &str, data: Option<&RawValue>) -> String {
    let channel = serde_json::to_string(channel).expect("a string serialises");
    let data = data.map_or("null", RawValue::get);
    format!(r#"{{"type":"message","channel":{channel},"data":{data}}}"#)
}

/// The `ack` frame's text.
pub fn ack_text(id: u64) -> String {
    format!(r#"{{"type":"ack","id":{id}}}"#)
}

/// The value of `--NAME VALUE` on the command line, if given.
pub fn arg(name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let mut args = std::env::args().skip(1);
    let mut value = None;
    while let Some(a) = args.next() {
        if a == flag {
            value = Some(
                args.next()
                    .unwrap_or_else(|| panic!("{flag} needs a value")),
            );
        }
    }
    value
}

/// The listen address: `--listen ADDR`, else `127.0.0.1:$PORT` when the
/// `PORT` environment variable is set, else the default.
pub fn listen_arg(default: &str) -> String {
    arg("listen")
        .or_else(|| std::env::var("PORT").ok().map(|p| format!("127.0.0.1:{p}")))
        .unwrap_or_else(|| default.to_string())
}
