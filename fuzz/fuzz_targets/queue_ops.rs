#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmq_fuzz::queue_ops::run(data));
