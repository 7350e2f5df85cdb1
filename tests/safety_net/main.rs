//! Tests that check the other checks hold: known answers published by the
//! providers, keys never shown, the fuzz harness's refusals, and the paths
//! the benchmarks measure. One test binary, so that CI links one.
//!
//! - `known_answers`: each HMAC-signed source against signatures someone
//!   else computed;
//! - `redaction`: no key in a `{:?}` of the table or in what `endpoints`
//!   and `check` print;
//! - `fuzz_harness`: the fuzz targets' harness, without libFuzzer;
//! - `bench_paths`: what each benchmark measures is what it means to.

#[path = "../common/mod.rs"]
mod common;

mod bench_paths;
mod fuzz_harness;
mod known_answers;
mod redaction;
