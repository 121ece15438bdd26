//! Scenario 6 under criterion: `restream::changes::diff` over 1,000 and 10,000 USGS-like items,
//! unchanged, 1 % changed and 100 % changed, reported in items (elements) per second.
//!
//! `cargo bench -p restream-bench --bench change_detection` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

#[allow(dead_code)] // the `restream-bench` binary uses the rest of it
#[path = "../src/classify.rs"]
mod classify;

use classify::{classify, fetched, quakes, stored_state, Case};

fn change_detection(c: &mut Criterion) {
    for n in [1_000usize, 10_000] {
        let base = quakes(n, 0);
        let stored = stored_state(&base);
        let mut group = c.benchmark_group(format!("change_detection/{n}_items"));
        group.throughput(Throughput::Elements(n as u64));
        if n >= 10_000 {
            // Each iteration classifies a whole channel: fewer, longer samples.
            group.sample_size(20);
        }
        for case in Case::ALL {
            let items = fetched(&base, case, 1);
            assert_eq!(
                classify(&mut items.clone(), &stored),
                case.changed(n),
                "{}: wrong number of changes",
                case.name()
            );
            group.bench_with_input(
                BenchmarkId::from_parameter(case.name()),
                &items,
                // Changes take their items out of the fetch: a fresh copy each time, untimed.
                |b, items| {
                    b.iter_batched_ref(
                        || items.clone(),
                        |items| classify(std::hint::black_box(items), &stored),
                        BatchSize::LargeInput,
                    )
                },
            );
        }
        group.finish();
    }
}

criterion_group!(benches, change_detection);
criterion_main!(benches);
