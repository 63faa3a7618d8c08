//! Runs `auth::fuzzing::check_policy_parse` on each fuzzer input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auth::fuzzing::check_policy_parse(data));
