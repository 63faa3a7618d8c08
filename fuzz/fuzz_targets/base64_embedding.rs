//! Runs `api::fuzzing::check_base64_embedding` on each fuzzer input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| api::fuzzing::check_base64_embedding(data));
