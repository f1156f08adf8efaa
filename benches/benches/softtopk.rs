//! Criterion benches of the LapSum soft top-k family against a hard top-k (row sort +
//! the k largest columns) on the same rows and device: rows B = 256 of n = 256 and 4096,
//! and one row of 2^16 (more sizes through `lapis bench softtopk`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lapis_ops::Device;

fn softtopk(c: &mut Criterion) {
    let dev = Device::auto().expect("benches need a device (see README prerequisites)");
    let mut g = c.benchmark_group("softtopk");
    for (rows, n) in [(256usize, 256usize), (256, 4096), (1, 1 << 16)] {
        let x = lapis_ops::normal(&dev, &[rows, n], 0.0, 1.0, 1).unwrap();
        let k = (n / 8) as f32;
        let gp = lapis_ops::normal(&dev, &[rows, n], 0.0, 1.0, 2).unwrap();
        g.throughput(Throughput::Elements((rows * n) as u64));
        let id = format!("{rows}x{n}");
        let mut run = |name: &str, f: &dyn Fn() -> lapis_ops::Result<lapis_ops::Tensor>| {
            g.bench_with_input(BenchmarkId::new(name, &id), &n, |b, _| {
                b.iter(|| {
                    let y = f().unwrap();
                    dev.sync().unwrap();
                    y
                })
            });
        };
        run("hard_topk_sort", &|| {
            let (_, perm) = lapis_ops::argsort_rows(&x)?;
            lapis_ops::slice(&perm, 1, n - n / 8, n)
        });
        run("soft_topk", &|| {
            lapis_ops::soft_topk(&x, k, 0.5).map(|o| o.p)
        });
        run("soft_topk_fwd_bwd", &|| {
            lapis_ops::soft_topk(&x, k, 0.5)?.backward(&gp).map(|g| g.x)
        });
        run("soft_rank", &|| lapis_ops::soft_rank(&x, 0.5));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = softtopk
}
criterion_main!(benches);
