#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| repofs_fuzz::meta_cargo(data));
