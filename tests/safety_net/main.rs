//! Tests that check the other checks hold: known answers published by the
//! providers, keys never shown, the fuzz harness's refusals, the paths
//! the benchmarks measure, and what every provider needs beside its file.
//! One test binary, so that CI links one.
//!
//! - `known_answers`: each HMAC-signed source against signatures someone
//!   else computed;
//! - `redaction`: no key in a `{:?}` of the table or in what `endpoints`
//!   and `check` print;
//! - `fuzz_harness`: the fuzz targets' harness, without libFuzzer;
//! - `bench_paths`: what each benchmark measures is what it means to;
//! - `every_source`: every source has a payload fixture its tests read, a
//!   section in docs/providers.md and a place in README's table.

#[path = "../common/mod.rs"]
mod common;

mod bench_paths;
mod every_source;
mod fuzz_harness;
mod known_answers;
mod redaction;
