//! Criterion benches of the Laplace engine: argsort, linear scan and `laplace_apply`
//! at N = 2^10 … 2^18 (lavapipe-friendly; larger sizes through `lapis bench laplace`),
//! with the cubek rfft of the same length in the same group for the ratio.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lapis_ops::Device;

fn engine(c: &mut Criterion) {
    let dev = Device::auto().expect("benches need a device (see README prerequisites)");
    let mut g = c.benchmark_group("laplace");
    for log_n in [10u32, 14, 18] {
        let n = 1usize << log_n;
        let s = lapis_ops::uniform(&dev, &[n], -100.0, 100.0, 1).unwrap();
        let t = lapis_ops::uniform(&dev, &[n], -100.0, 100.0, 2).unwrap();
        let v = lapis_ops::normal(&dev, &[n], 0.0, 1.0, 3).unwrap();
        let d = lapis_ops::uniform(&dev, &[n], 0.0, 1.0, 4).unwrap();
        g.throughput(Throughput::Elements(n as u64));
        let run = |name: &str,
                   g: &mut criterion::BenchmarkGroup<_>,
                   f: &dyn Fn() -> lapis_ops::Result<lapis_ops::Tensor>| {
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let y = f().unwrap();
                    dev.sync().unwrap();
                    y
                })
            });
        };
        run("argsort", &mut g, &|| {
            lapis_ops::argsort(&s).map(|(k, _)| k)
        });
        run("linear_scan", &mut g, &|| {
            lapis_ops::linear_scan(&d, &v, false)
        });
        run("laplace_apply", &mut g, &|| {
            lapis_ops::laplace_apply(&s, &t, &v, 0.5)
        });
        run("rfft", &mut g, &|| lapis_ops::rfft(&v).map(|(re, _)| re));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = engine
}
criterion_main!(benches);
