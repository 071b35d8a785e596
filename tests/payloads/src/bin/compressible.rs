//! Payload for compressed images: `compressible MIB` fills MIB of memory
//! with data that compresses like real program state — text lines of a warm
//! cache (half), arrays zeroed and then partly filled (a quarter: 256 bytes
//! of each page written) and random bytes (a quarter: stored raw) — prints
//! `ready <unix ns>`, `checkpoint <unix ns>`, checkpoints
//! (CRAC_CHECKPOINT_TO, CRAC_ENGINE_OPTIONS e.g. `compress=lz4`), and after
//! restore prints `restored <unix ns>`, checks every byte against a fresh
//! copy (`checked <unix ns>` once it has read all of it) and `data ok: BOOL`.

use payload::now_ns;

/// The data of `mib` MiB, the same on every call.
fn fill(mib: usize) -> Vec<u8> {
    let len = mib << 20;
    let mut v = vec![0u8; len];
    let text_end = len / 2;
    let sparse_end = len / 2 + len / 4;
    let mut at = 0;
    let mut line = 0u64;
    while at < text_end {
        let s = format!(
            "GET /api/v1/items/{} HTTP/1.1 200 user={} cache=warm bytes={}\n",
            line % 5003,
            line % 97,
            line * 31 % 65536
        );
        let n = s.len().min(text_end - at);
        v[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
        at += n;
        line += 1;
    }
    for (i, page) in v[text_end..sparse_end].chunks_mut(4096).enumerate() {
        for (j, b) in page[..256].iter_mut().enumerate() {
            *b = (i * 7 + j) as u8;
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for c in v[sparse_end..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

fn checksum(d: &[u8]) -> u64 {
    d.chunks(8).fold(0u64, |a, c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        a.rotate_left(5) ^ u64::from_le_bytes(w)
    })
}

fn main() {
    crac::init();
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(16, |a| a.parse().expect("MIB"));
    let data = fill(mib);
    let sum = checksum(&data);
    println!("ready {}", now_ns());
    println!("checkpoint {}", now_ns());
    let r = crac::checkpoint_restore();
    println!("restored {}", now_ns());
    if let Err(e) = r {
        println!("error: {e}");
        std::process::exit(1);
    }
    // Every page read (in a lazy restore: all of it loaded), then every
    // byte compared with a fresh copy.
    let sum_ok = checksum(&data) == sum;
    println!("checked {}", now_ns());
    let ok = sum_ok && data == fill(mib);
    println!("data ok: {ok}");
    std::process::exit(if ok { 0 } else { 1 });
}
