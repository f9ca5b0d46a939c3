#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sesame_server::fuzzing::refresh_token(data));
