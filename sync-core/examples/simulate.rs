//! Many seeded runs of the simulation (`hamlet_sync_core::sim`), for the figures in
//! docs/benchmarks.md:
//!
//! ```text
//! cargo run --release -p hamlet-sync-core --example simulate -- --runs 10000 [--steps 120] [--from 0]
//! cargo run --release -p hamlet-sync-core --example simulate -- --seed 1234   # one run, its story
//! ```
//!
//! Exits non-zero at the first seed that breaks a promise, printing its story.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use hamlet_sync_core::sim;

fn arg(args: &[String], name: &str) -> Option<u64> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps = arg(&args, "--steps").unwrap_or(sim::STEPS as u64) as usize;
    if let Some(seed) = arg(&args, "--seed") {
        match sim::run(seed, steps) {
            Ok(world) => println!("{}\nseed {seed} keeps every promise", world.story().join("\n")),
            Err(failure) => {
                println!("{failure}");
                std::process::exit(1);
            }
        }
        return;
    }
    let runs = arg(&args, "--runs").unwrap_or(1000);
    let from = arg(&args, "--from").unwrap_or(0);
    let started = Instant::now();
    let (mut crashes, mut crashes_mid_commit, mut failed_commits) = (0usize, 0usize, 0usize);
    let (mut refusals, mut frames_lost, mut stored) = (0usize, 0usize, 0usize);
    for seed in from..from + runs {
        match sim::run(seed, steps) {
            Ok(world) => {
                let story = world.story();
                crashes += story.iter().filter(|l| l.contains("the server crashes")).count();
                crashes_mid_commit +=
                    story.iter().filter(|l| l.contains("the server crashes") && !l.contains("with 0 commit")).count();
                failed_commits += story.iter().filter(|l| l.contains("fails")).count();
                refusals += story.iter().filter(|l| l.contains("changes refused")).count();
                frames_lost += story.iter().filter(|l| l.contains("loses a frame")).count();
                stored += world.total_stored_responses();
            }
            Err(failure) => {
                println!("{failure}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{runs} runs of {steps} steps (seeds {from}..{}): every promise kept; {crashes} server crashes \
         ({crashes_mid_commit} with a commit requested and not done), {failed_commits} failed commits, \
         {refusals} refusals, {frames_lost} frames lost, {stored} responses stored; {:.1} s ({:.2} ms a run)",
        from + runs,
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / runs as f64
    );
}
