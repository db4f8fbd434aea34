//! Offload measurements on the CPU backend (see docs/OFFLOAD.md, docs/BENCHMARKS.md).
//!
//! `lookup`: the GPU embedding-cache profile — one table, `--keys` Zipf(α) keys per
//! lookup, cache = 10% of rows; mean / P99 lookup latency and hit rate, offloaded (host
//! copy or `--mmap`) against the resident gather.
//!
//! `dlrm`: a generated DLRM (`cohost gen`) loaded with a device budget, driven by
//! `--threads` closed-loop workers with Zipf(α) indices; per-table hit rate and rows/s.
//!
//! ```text
//! cargo run --release -p cohost-models --example offload_lookup -- lookup --rows 1000000 --dim 128 --keys 2000 --alpha 1.2
//! cargo run --release -p cohost-models --example offload_lookup -- dlrm --model DIR --budget BYTES --alpha 1.05
//! ```

use cohost_kernels::cpu::{CpuOps, CpuTable};
use cohost_kernels::offload::{
    CacheConfig, CachePolicy, CacheTier, HostRows, MappedRows, OffloadedTable, RowSource,
    StoredType, default_cache_rows,
};
use cohost_kernels::{EmbeddingStore, Lane};
use cohost_models::{
    BackendHandle, Batch, InputData, ModelConfig, PlacementOptions, WeightSource, build_model,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use std::sync::Arc;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], key: &str, default: T) -> T {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {key}")))
        .unwrap_or(default)
}

/// `n` Zipf(α) row draws over `rows`, rank r mapped to row `(a·r + b) mod rows`.
fn zipf_rows(rng: &mut StdRng, rows: usize, alpha: f64, n: usize) -> Vec<i64> {
    let z = Zipf::new(rows as f64, alpha).unwrap();
    let a = (2_654_435_761u64 % rows as u64) | 1;
    let a = if gcd(a, rows as u64) == 1 { a } else { 1 };
    (0..n)
        .map(|_| ((a * (z.sample(rng) as u64 - 1) + 12345) % rows as u64) as i64)
        .collect()
}

fn gcd(mut x: u64, mut y: u64) -> u64 {
    while y != 0 {
        (x, y) = (y, x % y);
    }
    x
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn lookup(args: &[String]) {
    let rows: usize = arg(args, "--rows", 1_000_000);
    let dim: usize = arg(args, "--dim", 128);
    let keys: usize = arg(args, "--keys", 2000);
    let alpha: f64 = arg(args, "--alpha", 1.2);
    let lookups: usize = arg(args, "--lookups", 5000);
    let warmup: usize = arg(args, "--warmup", 1000);
    let lfu = args.iter().any(|a| a == "--lfu");
    let mmap = args.iter().any(|a| a == "--mmap");
    let mut rng = StdRng::seed_from_u64(42);
    let data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-0.1..0.1))
        .collect();
    let policy = if lfu {
        CachePolicy::Lfu
    } else {
        CachePolicy::Lru
    };
    let cache = CacheConfig::rows(default_cache_rows(rows), policy);
    let _dir;
    let source: Box<dyn RowSource> = if mmap {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.f32");
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private temp file nobody else writes.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap());
        _dir = Some(dir);
        Box::new(MappedRows::new(map, 0, rows, dim, StoredType::F32).unwrap())
    } else {
        _dir = None;
        Box::new(HostRows::new(data.clone(), rows, dim).unwrap())
    };
    let table = OffloadedTable::new("t", source, cache, CacheTier::Device);
    let resident = CpuTable::new("r", data, rows, dim).unwrap();
    let all = zipf_rows(&mut rng, rows, alpha, (warmup + lookups) * keys);
    let (warm, measured) = all.split_at(warmup * keys);
    for k in warm.chunks_exact(keys) {
        table.bag_sum_host(k, 1).unwrap();
    }
    let before = EmbeddingStore::<CpuOps>::memory(&table);
    let (ops, lane) = (CpuOps::new(), Lane::cpu(0));
    let time = |f: &dyn Fn(&[i64])| {
        let mut t: Vec<f64> = measured
            .chunks_exact(keys)
            .map(|k| {
                let s = Instant::now();
                f(k);
                s.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        t.sort_by(f64::total_cmp);
        (t.iter().sum::<f64>() / t.len() as f64, percentile(&t, 0.99))
    };
    let (off_mean, off_p99) = time(&|k| {
        std::hint::black_box(table.bag_sum_host(k, 1).unwrap());
    });
    let after = EmbeddingStore::<CpuOps>::memory(&table);
    let (res_mean, res_p99) = time(&|k| {
        std::hint::black_box(resident.bag_sum(&ops, &lane, k, 1).unwrap());
    });
    let (h, m) = (after.hits - before.hits, after.misses - before.misses);
    println!(
        "lookup rows={rows} dim={dim} keys={keys} alpha={alpha} policy={policy:?} tier={} cache_rows={}",
        if mmap { "mapped" } else { "host" },
        after.cache_capacity_rows
    );
    println!(
        "  offloaded: hit rate {:.3} (distinct keys per lookup {:.0}), mean {off_mean:.0} us, p99 {off_p99:.0} us",
        h as f64 / (h + m) as f64,
        (h + m) as f64 / lookups as f64
    );
    println!("  resident:  mean {res_mean:.0} us, p99 {res_p99:.0} us");
}

fn dlrm(args: &[String]) {
    let dir: String = arg(args, "--model", String::new());
    let budget: u64 = arg(args, "--budget", 0);
    let host: Option<u64> = args
        .iter()
        .any(|a| a == "--host-budget")
        .then(|| arg(args, "--host-budget", 0));
    let alpha: f64 = arg(args, "--alpha", 1.05);
    let batch: usize = arg(args, "--batch", 64);
    let batches: usize = arg(args, "--batches", 400);
    let threads: usize = arg(args, "--threads", 2);
    let dir = std::path::Path::new(&dir);
    let mut config = ModelConfig::from_file(&dir.join("config.toml")).unwrap();
    if args.iter().any(|a| a == "--lfu") {
        config.dlrm.as_mut().unwrap().cache_policy = cohost_models::config::CachePolicyKind::Lfu;
    }
    let path = dir.join("1").join("model.safetensors");
    let placement = PlacementOptions {
        device_budget: (budget > 0).then_some(budget),
        host_budget: host,
    };
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let t0 = Instant::now();
    let model = build_model(&config, WeightSource::File(&path), &backend, &placement).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    let p = config.dlrm.clone().unwrap();
    let make = |seed: u64, n: usize| -> Vec<Batch> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut sparse = vec![0i64; batch * p.table_sizes.len()];
                for (t, &rows) in p.table_sizes.iter().enumerate() {
                    for (r, v) in zipf_rows(&mut rng, rows, alpha, batch)
                        .into_iter()
                        .enumerate()
                    {
                        sparse[r * p.table_sizes.len() + t] = v;
                    }
                }
                let dense = (0..batch * p.dense_features)
                    .map(|_| rng.random())
                    .collect();
                Batch {
                    rows: batch,
                    inputs: vec![InputData::F32(dense), InputData::I64(sparse)],
                }
            })
            .collect()
    };
    // Warm the caches with a disjoint stream, then measure.
    for b in make(7, batches / 4) {
        model.forward(&Lane::cpu(0), &b).unwrap();
    }
    let before = model.memory();
    let work: Vec<Vec<Batch>> = (0..threads)
        .map(|i| make(100 + i as u64, batches / threads))
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (i, w) in work.iter().enumerate() {
            let model = &model;
            s.spawn(move || {
                for b in w {
                    model.forward(&Lane::cpu(i), b).unwrap();
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let after = model.memory();
    let (mut h, mut m) = (0, 0);
    for ((name, place, a), (_, _, b)) in after.tables.iter().zip(&before.tables) {
        let (dh, dm) = (a.hits - b.hits, a.misses - b.misses);
        h += dh;
        m += dm;
        if dh + dm > 0 {
            println!(
                "  {name} {place:?}: hit rate {:.3}",
                dh as f64 / (dh + dm) as f64
            );
        }
    }
    println!(
        "dlrm alpha={alpha} budget={budget} device={} host={} load {load_s:.1}s: offloaded hit rate {:.3}, {:.0} rows/s ({threads} threads, batch {batch})",
        after.device_bytes(),
        after.host_bytes(),
        if h + m > 0 {
            h as f64 / (h + m) as f64
        } else {
            f64::NAN
        },
        (batches / threads * threads * batch) as f64 / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("lookup") => lookup(&args),
        Some("dlrm") => dlrm(&args),
        _ => eprintln!(
            "usage: offload_lookup lookup [--rows N --dim D --keys K --alpha A --mmap --lfu] | dlrm --model DIR --budget BYTES [--alpha A --host-budget B --threads T]"
        ),
    }
}
