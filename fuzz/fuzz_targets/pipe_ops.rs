#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmq_fuzz::pipe_ops::run(data));
