//! Per-byte costs of what the peer protocol adds on top of QUIC, on this CPU, one core:
//! the session AEAD (AES-256-GCM and ChaCha20-Poly1305, ring), the SHA-1 chain that verifies
//! chunks, and LZ4 on synthetic mod data (BC1/BC7 texture blocks, vertex and index buffers).
//!
//! Run with: `cargo run --profile bench-fast -p peer --example bench_codec`

#[path = "support/bench_util.rs"]
mod bench_util;

use std::time::Instant;

use peer::net::session::{Cipher, SessionKeys};
use peer::transfer::sha1_chain;

const RECORD: usize = 64 * 1024;
const TOTAL: usize = 512 << 20;

fn rate(bytes: usize, start: Instant) -> f64 {
    bytes as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let mut buf = vec![0u8; RECORD];
    bench_util::fill(&mut buf, 3);
    for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        let ex: [u8; 64] = std::array::from_fn(|i| i as u8);
        let (a, b) = (
            SessionKeys::from_exported(cipher, &ex, true),
            SessionKeys::from_exported(cipher, &ex, false),
        );
        let mut rec = buf.clone();
        let mut tags = Vec::with_capacity(TOTAL / RECORD);
        let start = Instant::now();
        for seq in 0..(TOTAL / RECORD) as u32 {
            tags.push(a.seal(0, seq, b"hdr", &mut rec));
        }
        let seal = rate(TOTAL, start);
        // Open the last record once to check the keys pair up.
        let mut last = rec.clone();
        last.extend_from_slice(tags.last().unwrap());
        b.open(0, (TOTAL / RECORD) as u32 - 1, b"hdr", &mut last)
            .unwrap();
        let start = Instant::now();
        let mut opened = 0;
        for seq in 0..(TOTAL / RECORD) as u32 {
            // Authentication fails (the record was not sealed with this nonce) but the work is
            // the same as a successful open: decrypt and tag check over 64 KiB.
            let mut r = rec.clone();
            r.extend_from_slice(&tags[0]);
            opened += usize::from(b.open(0, seq, b"hdr", &mut r).is_ok());
        }
        let open = rate(TOTAL, start);
        std::hint::black_box(opened);
        println!(
            "{cipher:?}: seal {seal:.2} GB/s, open {open:.2} GB/s per core (64 KiB records; open includes a 64 KiB copy)"
        );
    }
    let start = Instant::now();
    let mut state = sha1_chain::SHA1_IV;
    for _ in 0..TOTAL / RECORD {
        sha1_chain::advance(&mut state, &buf);
    }
    println!(
        "SHA-1 chain verification: {:.2} GB/s per core",
        rate(TOTAL, start)
    );
    println!("\nLZ4 (block format, 64 KiB records) on synthetic mod data:");
    for (name, data) in [
        ("BC1 texture blocks", bc1(32 << 20)),
        ("BC7 texture blocks", bc7(32 << 20)),
        ("vertex buffer (pos/normal/uv f32)", vertices(32 << 20)),
        ("index buffer (u16 triangle list)", indices(32 << 20)),
        ("random (incompressible)", {
            let mut v = vec![0u8; 32 << 20];
            bench_util::fill(&mut v, 9);
            v
        }),
    ] {
        let start = Instant::now();
        let packed: Vec<Vec<u8>> = data.chunks(RECORD).map(lz4_flex::block::compress).collect();
        let c = rate(data.len(), start);
        let size: usize = packed.iter().map(Vec::len).sum();
        let start = Instant::now();
        let mut out = vec![0u8; RECORD];
        for (p, orig) in packed.iter().zip(data.chunks(RECORD)) {
            let n = lz4_flex::block::decompress_into(p, &mut out).unwrap();
            assert_eq!(&out[..n], orig);
        }
        let d = rate(data.len(), start);
        println!(
            "  {name:36} ratio {:5.3}  compress {c:.2} GB/s  decompress {d:.2} GB/s",
            size as f64 / data.len() as f64
        );
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// BC1: per 4x4 block two RGB565 endpoints that drift smoothly across the image (as in real
/// textures, neighbouring blocks have similar colours) and 16 two-bit indices with noise.
fn bc1(len: usize) -> Vec<u8> {
    let mut r = Rng(1);
    let mut out = Vec::with_capacity(len);
    let width = 256; // blocks per row (1024 px)
    let mut i = 0u64;
    while out.len() < len {
        let (x, y) = (i % width, i / width % width);
        let base = |s: u64| {
            (((x * 31 / width + s) & 31) << 11
                | ((y * 63 / width + s) & 63) << 5
                | ((x + y) * 31 / (2 * width)) & 31) as u16
        };
        let c0 = base(r.next() % 3);
        let c1 = base(2 + r.next() % 3);
        out.extend_from_slice(&c0.max(c1).to_le_bytes());
        out.extend_from_slice(&c0.min(c1).to_le_bytes());
        out.extend_from_slice(&(r.next() as u32).to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// BC7: 16-byte blocks, a mode byte from a few common modes, then endpoint and index bits that
/// are close to random (BC7 is dense by design).
fn bc7(len: usize) -> Vec<u8> {
    let mut r = Rng(2);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mode = [0x20u8, 0x40, 0x02][(r.next() % 3) as usize];
        out.push(mode);
        out.extend_from_slice(&r.next().to_le_bytes()[..7]);
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Vertices of a smooth height-field mesh: position, normal, uv as f32 (32 bytes each).
fn vertices(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let n = 512u32;
    let mut i = 0u32;
    while out.len() < len {
        let (gx, gy) = ((i % n) as f32 / n as f32, (i / n % n) as f32 / n as f32);
        let h = (gx * 12.0).sin() * (gy * 7.0).cos() * 0.1;
        let (nx, ny) = (
            (gx * 12.0).cos() * 1.2 * (gy * 7.0).cos(),
            -(gx * 12.0).sin() * 0.7 * (gy * 7.0).sin(),
        );
        let l = (nx * nx + ny * ny + 1.0).sqrt();
        for f in [gx, h, gy, nx / l, 1.0 / l, ny / l, gx, gy] {
            out.extend_from_slice(&f.to_le_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

/// A triangle list over a grid, as u16 indices in 64k-vertex batches.
fn indices(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let w = 255u16;
    let mut q = 0u32;
    while out.len() < len {
        let (x, y) = (
            (q % u32::from(w)) as u16,
            (q / u32::from(w) % u32::from(w)) as u16,
        );
        let v = y * (w + 1) + x;
        for idx in [v, v + 1, v + w + 1, v + 1, v + w + 2, v + w + 1] {
            out.extend_from_slice(&idx.to_le_bytes());
        }
        q += 1;
    }
    out.truncate(len);
    out
}
