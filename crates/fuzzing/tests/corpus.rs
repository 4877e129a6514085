//! The fuzz corpora (`fuzz/corpus/<target>/`), replayed through the targets on every test
//! run: each input the fuzzer kept, or that once crashed a target, stays fixed.

use std::path::Path;

#[test]
fn every_kept_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, run) in outpost_fuzzing::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the {name} corpus at {}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let input = std::fs::read(&path).expect("read a corpus input");
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(
                outcome.is_ok(),
                "{name}: {} fails (replay with `cargo xtask fuzz {name} --input {}`)",
                path.display(),
                path.display()
            );
            replayed += 1;
        }
        assert!(replayed > 0, "the {name} corpus is empty");
    }
}

/// A short smoke run without libFuzzer: seeded random inputs, the same on every run,
/// mutated from the corpus and made from scratch (`cargo xtask fuzz` is the real run).
#[test]
fn seeded_random_inputs_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, run) in outpost_fuzzing::TARGETS {
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(root.join(name))
            .expect("corpus")
            .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read"))
            .collect();
        for round in 0..300 {
            let mut input = if round % 2 == 0 {
                seeds[next() as usize % seeds.len()].clone()
            } else {
                (0..next() % 512).map(|_| next() as u8).collect()
            };
            for _ in 0..(next() % 8) {
                if input.is_empty() {
                    break;
                }
                let at = next() as usize % input.len();
                input[at] = next() as u8;
            }
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(outcome.is_ok(), "{name} failed on round {round}: {input:?}");
        }
    }
}
