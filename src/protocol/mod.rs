//! The wire protocol between the `nv-ipam` plugin and the `ipam-node` daemon: length-prefixed
//! JSON frames over a unix socket. The normative spec is `protocol/README.md`; golden frames
//! live in `protocol/examples/` and are loaded by the tests.
//!
//! Layout: [`frame`] works on bytes (length prefix, size limit), [`message`] holds the typed
//! requests and responses, [`decode`] turns a peer's request bytes into a typed request with
//! bounded memory and depth, [`client`] owns a connection from the plugin's side. The daemon's
//! side lives in `node::server`.

pub mod client;
pub mod decode;
pub mod frame;
pub mod message;

pub use decode::{DecodeError, decode_request};
pub use frame::{FrameError, MAX_FRAME_BYTES};
pub use message::*;
