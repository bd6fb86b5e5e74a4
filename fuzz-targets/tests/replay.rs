//! `make test`'s share of the fuzzing: every target (all of
//! `fuzz/fuzz_targets/`) runs its committed seeds (`fuzz/corpus/<target>`),
//! the inputs of crashes fixed before (`fuzz/regressions/<target>`) and a
//! few thousand mutations of them, deterministic (a fixed seed), so a run
//! that fails fails again. `make fuzz` is the coverage-guided search; this
//! keeps the harnesses building and the fixed crashes fixed on stable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_fuzz_targets::TARGETS;

/// Mutations per target, and the most time they may take (a debug build
/// of the config parser is slow).
const MUTATIONS: usize = 3000;
const MUTATION_BUDGET: Duration = Duration::from_secs(4);
/// The longest input a mutation makes (the fuzzer's -max_len for most).
const MAX_LEN: usize = 4096;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files in `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One of libFuzzer's simpler mutations of `input`: flip a bit, set a
/// byte, insert or erase a run, duplicate a slice, or splice another seed.
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0, 0xff, 0x7f, 0x80, b'&', b'*', b':', b'\n'][rng.below(8)];
            }
            2 => {
                let at = rng.below(len + 1);
                let run: Vec<u8> = (0..=rng.below(16)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, run);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, copy);
            }
            _ => {
                if let Some(other) = seeds.get(rng.below(seeds.len())) {
                    let cut = rng.below(out.len() + 1);
                    let from = rng.below(other.len() + 1);
                    out.truncate(cut);
                    out.extend_from_slice(&other[from..]);
                }
            }
        }
    }
    out.truncate(MAX_LEN);
    out
}

/// Runs `input` through `run`; the panic's message if it panics.
fn failure(run: cairn_fuzz_targets::Harness, input: &[u8]) -> Option<String> {
    catch_unwind(AssertUnwindSafe(|| run(input)))
        .err()
        .map(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into())
        })
}

#[test]
fn a_panicking_harness_is_reported_and_a_quiet_one_is_not() {
    assert_eq!(failure(|_| {}, b"x"), None);
    let why = failure(|d| assert!(d.is_empty(), "not empty: {d:?}"), b"x");
    assert!(why.is_some_and(|w| w.contains("not empty")));
}

#[test]
fn every_fuzz_target_has_a_harness_here() {
    let mut binaries: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_string))
        .collect();
    binaries.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    here.sort();
    assert_eq!(
        binaries, here,
        "fuzz/fuzz_targets and cairn_fuzz_targets::TARGETS differ"
    );
    for (name, _) in TARGETS {
        assert!(
            !inputs(&fuzz_dir().join("corpus").join(name)).is_empty(),
            "{name} has no seeds in fuzz/corpus/{name}"
        );
    }
}

#[test]
fn seeds_regressions_and_mutations_of_them_pass_every_target() {
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for (name, run) in TARGETS {
        let mut files = inputs(&fuzz_dir().join("corpus").join(name));
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        files.extend(regressions.iter().cloned());
        let seeds: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
            .collect();
        for (file, seed) in files.iter().zip(&seeds) {
            if let Some(why) = failure(*run, seed) {
                failures.push(format!("{name}: {}: {why}", file.display()));
            }
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        let started = Instant::now();
        let mut runs = 0;
        while runs < MUTATIONS && started.elapsed() < MUTATION_BUDGET {
            let base = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, base, &seeds);
            if let Some(why) = failure(*run, &input) {
                failures.push(format!(
                    "{name}: mutation {runs} of the seeds ({} bytes, first 64: {:02x?}): {why}",
                    input.len(),
                    &input[..input.len().min(64)]
                ));
                break;
            }
            runs += 1;
        }
        report.push(format!(
            "{name:<16} {:>3} seeds, {:>2} regressions, {runs:>5} mutations in {:.1} s",
            seeds.len() - regressions.len(),
            regressions.len(),
            started.elapsed().as_secs_f64()
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
