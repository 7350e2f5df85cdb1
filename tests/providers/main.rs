//! The providers end to end, through the real HTTP stack to a stand-in
//! fluxd.
//!
//! - `conformance`: every case of the Go original's own tests;
//! - `git`: the git providers' samples, the events that need no action and
//!   wrong signatures;
//! - `registry`: the registry providers and the generic hooks;
//! - `standard_webhooks`: signatures that cover a delivery's id and time,
//!   and replays;
//! - `argocd`: each git provider's payload made into the pushes Argo CD
//!   reads, read by a stand-in Argo CD;
//! - `bad_input`: every mutation of a valid delivery, for every source,
//!   gets its 4xx and nothing reaches fluxd.
//!
//! One test binary, so that CI links one.

#[path = "../common/mod.rs"]
mod common;

mod argocd;
mod bad_input;
mod conformance;
mod git;
mod registry;
mod standard_webhooks;
