#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost_fuzzing::bindings::run(data));
