//! Criterion benches of the core ops at several sizes (to show the growth law), on the
//! device `Device::auto()` picks. Every iteration syncs the device.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lapis_ops::Device;

fn elementwise(c: &mut Criterion) {
    let dev = Device::auto().expect("benches need a device (see README prerequisites)");
    let mut g = c.benchmark_group("elementwise");
    for n in [1usize << 12, 1 << 16, 1 << 20] {
        let a = lapis_ops::uniform(&dev, &[n], -1.0, 1.0, 1).unwrap();
        let b = lapis_ops::uniform(&dev, &[n], -1.0, 1.0, 2).unwrap();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("exp", n), &n, |bch, _| {
            bch.iter(|| {
                let y = lapis_ops::exp(&a).unwrap();
                dev.sync().unwrap();
                y
            })
        });
        g.bench_with_input(BenchmarkId::new("add", n), &n, |bch, _| {
            bch.iter(|| {
                let y = lapis_ops::add(&a, &b).unwrap();
                dev.sync().unwrap();
                y
            })
        });
        g.bench_with_input(BenchmarkId::new("sum_all", n), &n, |bch, _| {
            bch.iter(|| lapis_ops::sum_all(&a).unwrap().to_scalar().unwrap())
        });
    }
    g.finish();
}

fn matmul_softmax(c: &mut Criterion) {
    let dev = Device::auto().expect("benches need a device (see README prerequisites)");
    let mut g = c.benchmark_group("matmul");
    for n in [64usize, 128, 256] {
        let a = lapis_ops::normal(&dev, &[n, n], 0.0, 1.0, 1).unwrap();
        g.throughput(Throughput::Elements((2 * n * n * n) as u64));
        g.bench_with_input(BenchmarkId::new("square", n), &n, |bch, _| {
            bch.iter(|| {
                let y = lapis_ops::matmul(&a, &a).unwrap();
                dev.sync().unwrap();
                y
            })
        });
        g.bench_with_input(BenchmarkId::new("softmax_rows", n), &n, |bch, _| {
            bch.iter(|| {
                let y = lapis_ops::softmax(&a, 1).unwrap();
                dev.sync().unwrap();
                y
            })
        });
    }
    g.finish();
}

/// `argsort_rows` of `[256, 1024]` keys: the one-cube-per-row bitonic path (what
/// `argsort_rows` takes) against the global radix path it replaces for short rows.
fn sort_rows(c: &mut Criterion) {
    let dev = Device::auto().expect("benches need a device (see README prerequisites)");
    let mut g = c.benchmark_group("argsort_rows");
    let (rows, cols) = (256usize, 1024usize);
    let keys = lapis_ops::uniform(&dev, &[rows, cols], -1.0, 1.0, 3).unwrap();
    g.throughput(Throughput::Elements((rows * cols) as u64));
    let id = format!("{rows}x{cols}");
    g.bench_with_input(BenchmarkId::new("bitonic", &id), &id, |bch, _| {
        bch.iter(|| {
            let y = lapis_ops::argsort_rows(&keys).unwrap();
            dev.sync().unwrap();
            y
        })
    });
    g.bench_with_input(BenchmarkId::new("radix", &id), &id, |bch, _| {
        bch.iter(|| {
            let y = lapis_ops::sort::argsort_rows_radix(&keys).unwrap();
            dev.sync().unwrap();
            y
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = elementwise, matmul_softmax, sort_rows
}
criterion_main!(benches);
