//! The HTTP wire: request heads in, responses out, and the credentials they carry. Knows
//! nothing of mounts or streams.
//!
//! - [`http`]: head framing and parsing (sans-IO), responses, the chunked-body decoder.
//! - [`auth`]: Basic credentials, constant-time comparison, generated passwords.
//! - [`conn`]: [`conn::Connection`], the one connection type handlers take, plain or TLS.

pub(crate) mod auth;
pub(crate) mod conn;
pub(crate) mod http;
