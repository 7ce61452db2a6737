//! Start-up of a [`peer::FolderStore`] over many files (issue 12: a Penumbra mod folder holds
//! tens of thousands): hashing everything (no index), then with the hash index written by the
//! first start, in the same run; the ratio is the figure. Then reads every file once with
//! the default bound on open files and reports how many stayed open.
//!
//! `cargo run --profile bench-fast -p peer --example bench_store -- [FILES] [DIR]`
//! (default 50,000 files of 1-16 KiB, 200 folders, under a new folder in the system's temp
//! folder, deleted afterwards; the page cache is warm for both starts, so the difference is
//! hashing, not the disk).

use std::path::PathBuf;
use std::time::Instant;

use peer::Store;
use peer::storage::folder::{FolderStore, FolderStoreConfig};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|_| std::io::Error::other("FILES: a number"))?,
        None => 50_000,
    };
    let base = args
        .next()
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!("bench-store-{}", std::process::id()));
    let dir = base.join("mods");
    let index = base.join("peer-index.bin");
    let t = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = 0u64;
    for i in 0..files {
        let sub = dir.join(format!("mod{:03}", i % 200));
        if i < 200 {
            std::fs::create_dir_all(&sub)?;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 1024 + (x % (15 * 1024)) as usize;
        let data: Vec<u8> = (0..len).map(|j| (x >> (j % 56)) as u8 ^ j as u8).collect();
        bytes += len as u64;
        std::fs::write(sub.join(format!("file{i}.tex")), data)?;
    }
    println!(
        "made {files} files, {:.1} MiB, in {:.1} s",
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let config = FolderStoreConfig {
        index: Some(index.clone()),
        ..Default::default()
    };

    let t = Instant::now();
    let (_, cold) = FolderStore::open(&dir, &config)?;
    let cold_s = t.elapsed().as_secs_f64();
    let index_len = std::fs::metadata(&index)?.len();
    let t = Instant::now();
    let (store, warm) = FolderStore::open(&dir, &config)?;
    let warm_s = t.elapsed().as_secs_f64();
    println!(
        "cold start (hash all):   {cold_s:7.2} s  ({} files hashed)",
        cold.hashed
    );
    println!(
        "start with the index:    {warm_s:7.2} s  ({} files from the index, {} hashed; index {:.1} MiB)",
        warm.reused,
        warm.hashed,
        index_len as f64 / (1 << 20) as f64
    );
    println!("cold / with index:       {:7.1}x", cold_s / warm_s);

    let t = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    for (hash, size, _) in store.list() {
        store.read_at(&hash, 0, &mut buf[..size as usize])?;
    }
    println!(
        "read every file once:    {:7.2} s, {} files open at the end (bound {})",
        t.elapsed().as_secs_f64(),
        store.open_files(),
        config.max_open_files
    );
    std::fs::remove_dir_all(&base)?;
    Ok(())
}
