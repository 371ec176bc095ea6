#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hamlet_fuzz::checks::sync(data));
