//! The server's edge, end to end on 127.0.0.1: what clients that push it
//! can and cannot make it do.
//!
//! - `connection_slots`: keep-alive clients cannot hold
//!   `--max-connections` for ever;
//! - `hostile_connections`: connections that never read their replies, and
//!   header blocks larger than the read buffer;
//! - `limits`: slow or idle clients, while a real hook still gets through;
//! - `amplification`: one delivery cannot fan out into many calls to fluxd.
//!
//! One test binary, so that CI links one.

#[path = "../common/mod.rs"]
mod common;

mod amplification;
mod connection_slots;
mod hostile_connections;
mod limits;
mod tls;
