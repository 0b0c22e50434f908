//! Hierarchical navigable small-world graphs (Malkov & Yashunin) for approximate nearest neighbours:
//! L2 or cosine, the neighbour-selection heuristic, level-0 degree 2M, AVX2/FMA distance kernels chosen at
//! run time (portable code elsewhere), a versioned binary format. Written here rather than taken from a crate
//! because it must be persisted with a collection, deleted from consistently (collections rebuild it with the
//! chunk set) and match hnswlib's speed at the same M and ef; see BENCHMARKS.md.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{Read, Write};

/// How distance is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// 1 − cosine similarity; vectors are normalised when added and queries when searched.
    Cosine,
}

/// Build parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    /// Links per node on the upper levels (2M on level 0).
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 42,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
struct Cand {
    d: f32,
    id: u32,
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

type DistFn = fn(&[f32], &[f32]) -> f32;

fn l2_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn cos_portable(a: &[f32], b: &[f32]) -> f32 {
    1.0 - dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(v, 1);
        let lo = _mm256_castps256_ps128(v);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes `i .. i + width` with `i + width <= n`, and `n` is the shorter
        // length, so all reads stay inside both slices; the CPU features were checked by the caller.
        unsafe {
            while i + 16 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
                i += 16;
            }
            while i + 8 <= n {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                i += 8;
            }
            let mut s = hsum(_mm256_add_ps(acc0, acc1));
            while i < n {
                let d = *pa.add(i) - *pb.add(i);
                s += d * d;
                i += 1;
            }
            s
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes `i .. i + width` with `i + width <= n`, and `n` is the shorter
        // length, so all reads stay inside both slices; the CPU features were checked by the caller.
        unsafe {
            while i + 16 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
                i += 16;
            }
            while i + 8 <= n {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                i += 8;
            }
            let mut s = hsum(_mm256_add_ps(acc0, acc1));
            while i < n {
                s += *pa.add(i) * *pb.add(i);
                i += 1;
            }
            s
        }
    }

    pub fn l2_safe(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only selected after `is_x86_feature_detected!("avx2")` and `("fma")` returned true.
        unsafe { l2(a, b) }
    }

    pub fn cos_safe(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        1.0 - unsafe { dot(a, b) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    unsafe fn l2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes `i .. i + width` with `i + width <= n`, and `n` is the shorter
        // length, so all reads stay inside both slices; the CPU features were checked by the caller.
        unsafe {
            while i + 32 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                let d1 = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                );
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                acc1 = _mm512_fmadd_ps(d1, d1, acc1);
                i += 32;
            }
            if i + 16 <= n {
                let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc0 = _mm512_fmadd_ps(d0, d0, acc0);
                i += 16;
            }
            let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
            while i < n {
                let d = *pa.add(i) - *pb.add(i);
                s += d * d;
                i += 1;
            }
            s
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes `i .. i + width` with `i + width <= n`, and `n` is the shorter
        // length, so all reads stay inside both slices; the CPU features were checked by the caller.
        unsafe {
            while i + 32 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc1,
                );
                i += 32;
            }
            if i + 16 <= n {
                acc0 =
                    _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
                i += 16;
            }
            let mut s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
            while i < n {
                s += *pa.add(i) * *pb.add(i);
                i += 1;
            }
            s
        }
    }

    pub fn l2_safe(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: only selected after `is_x86_feature_detected!("avx512f")` returned true.
        unsafe { l2(a, b) }
    }

    pub fn cos_safe(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as above.
        1.0 - unsafe { dot(a, b) }
    }
}

/// Asks the CPU to start loading the first cache lines of `v` (the next candidate's vector).
#[inline(always)]
fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr() as *const i8;
        // `wrapping_add`: for a short vector the later lines lie past its allocation, and `add` there would be
        // undefined behaviour even though nothing is read; a wrapped pointer is fine to hand to a prefetch.
        // SAFETY: prefetching is a hint: it never faults and reads nothing the program observes.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(128));
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(192));
        }
    }
}

fn dist_fn(metric: Metric) -> DistFn {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return match metric {
            Metric::L2 => avx512::l2_safe,
            Metric::Cosine => avx512::cos_safe,
        };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return match metric {
            Metric::L2 => avx::l2_safe,
            Metric::Cosine => avx::cos_safe,
        };
    }
    match metric {
        Metric::L2 => l2_portable,
        Metric::Cosine => cos_portable,
    }
}

/// Normalises a vector to unit length (zero vectors stay zero).
pub fn normalize(v: &mut [f32]) {
    let n = dot_portable(v, v).sqrt();
    if n > 0.0 {
        for x in v {
            *x /= n;
        }
    }
}

/// An HNSW index over `len()` vectors of `dim()` dimensions, ids 0..len.
pub struct Hnsw {
    dim: usize,
    metric: Metric,
    m: usize,
    m0: usize,
    ef_construction: usize,
    data: Vec<f32>,
    levels: Vec<u8>,
    /// Level-0 links: per node `m0 + 1` slots, the first holding the count.
    l0: Vec<u32>,
    /// Upper-level links per node: levels 1..=level, each `m + 1` slots (count first).
    upper: Vec<Vec<u32>>,
    entry: Option<u32>,
    max_level: usize,
    rng: u64,
    dist: DistFn,
}

/// Per-thread search scratch: visited stamps (a node is visited when its entry equals the current stamp),
/// the stamp, the candidate min-heap and the result max-heap.
type Scratch = (Vec<u32>, u32, BinaryHeap<Reverse<Cand>>, BinaryHeap<Cand>);

thread_local! {
    static VISITED: RefCell<Scratch> =
        const { RefCell::new((Vec::new(), 0, BinaryHeap::new(), BinaryHeap::new())) };
}

/// Errors reading an index file.
#[derive(Debug, thiserror::Error)]
pub enum HnswError {
    #[error("not an HNSW index file (bad magic)")]
    Magic,
    #[error("HNSW index format version {0} is not supported (this build reads version 1)")]
    Version(u32),
    #[error("HNSW index file is truncated or inconsistent: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const MAGIC: &[u8; 8] = b"KEELHNSW";
const VERSION: u32 = 1;

impl Hnsw {
    pub fn new(dim: usize, metric: Metric, params: HnswParams) -> Hnsw {
        let m = params.m.max(2);
        Hnsw {
            dim,
            metric,
            m,
            m0: 2 * m,
            ef_construction: params.ef_construction.max(m),
            data: Vec::new(),
            levels: Vec::new(),
            l0: Vec::new(),
            upper: Vec::new(),
            entry: None,
            max_level: 0,
            rng: params.seed ^ 0x9E37_79B9_7F4A_7C15,
            dist: dist_fn(metric),
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn vector(&self, id: u32) -> &[f32] {
        let i = id as usize * self.dim;
        &self.data[i..i + self.dim]
    }

    #[inline]
    fn d(&self, q: &[f32], id: u32) -> f32 {
        (self.dist)(q, self.vector(id))
    }

    #[inline(always)]
    fn links(&self, id: u32, level: usize) -> &[u32] {
        if level == 0 {
            let s = id as usize * (self.m0 + 1);
            let n = self.l0[s] as usize;
            &self.l0[s + 1..s + 1 + n]
        } else {
            let s = (level - 1) * (self.m + 1);
            let v = &self.upper[id as usize];
            let n = v[s] as usize;
            &v[s + 1..s + 1 + n]
        }
    }

    #[inline(always)]
    fn prefetch_links(&self, id: u32, level: usize) {
        #[cfg(target_arch = "x86_64")]
        if level == 0 {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let s = id as usize * (self.m0 + 1);
            if let Some(slot) = self.l0.get(s) {
                let p = slot as *const u32 as *const i8;
                // SAFETY: a prefetch is only a hint and never faults; the address is inside `l0`.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(p);
                    _mm_prefetch::<_MM_HINT_T0>(p.add(64));
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (id, level);
    }

    fn set_links(&mut self, id: u32, level: usize, ids: &[u32]) {
        if level == 0 {
            let s = id as usize * (self.m0 + 1);
            self.l0[s] = ids.len() as u32;
            self.l0[s + 1..s + 1 + ids.len()].copy_from_slice(ids);
        } else {
            let s = (level - 1) * (self.m + 1);
            let v = &mut self.upper[id as usize];
            v[s] = ids.len() as u32;
            v[s + 1..s + 1 + ids.len()].copy_from_slice(ids);
        }
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.m as f64).ln();
        ((-u.ln() * ml) as usize).min(16)
    }

    /// Best `ef` nodes at `level` reachable from `entry` points, nearest first.
    fn search_layer(&self, q: &[f32], entry: &[Cand], ef: usize, level: usize) -> Vec<Cand> {
        VISITED.with(|cell| {
            let mut guard = cell.borrow_mut();
            let guard = &mut *guard;
            let (visited, stamp) = (&mut guard.0, &mut guard.1);
            if visited.len() < self.len() {
                visited.resize(self.len(), 0);
            }
            *stamp = stamp.wrapping_add(1);
            if *stamp == 0 {
                visited.iter_mut().for_each(|v| *v = 0);
                *stamp = 1;
            }
            let stamp = *stamp;
            // The heaps are kept between searches on this thread: no allocation per query.
            let (cands, best) = (&mut guard.2, &mut guard.3);
            cands.clear();
            best.clear();
            for &e in entry {
                visited[e.id as usize] = stamp;
                cands.push(Reverse(e));
                best.push(e);
            }
            while best.len() > ef {
                best.pop();
            }
            while let Some(Reverse(c)) = cands.pop() {
                let worst = best.peek().map_or(f32::INFINITY, |b| b.d);
                if c.d > worst && best.len() >= ef {
                    break;
                }
                // The node expanded after this one is likely the next nearest candidate: start loading its links.
                if let Some(Reverse(next)) = cands.peek() {
                    self.prefetch_links(next.id, level);
                }
                let links = self.links(c.id, level);
                // Vectors of neighbours not seen yet are loaded one step ahead of their distance.
                if let Some(&first) = links.first()
                    && visited[first as usize] != stamp
                {
                    prefetch(self.vector(first));
                }
                for (j, &nb) in links.iter().enumerate() {
                    if let Some(&next) = links.get(j + 1)
                        && visited[next as usize] != stamp
                    {
                        prefetch(self.vector(next));
                    }
                    let v = &mut visited[nb as usize];
                    if *v == stamp {
                        continue;
                    }
                    *v = stamp;
                    let d = self.d(q, nb);
                    let worst = best.peek().map_or(f32::INFINITY, |b| b.d);
                    if best.len() < ef || d < worst {
                        let cand = Cand { d, id: nb };
                        cands.push(Reverse(cand));
                        best.push(cand);
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
            let mut v: Vec<Cand> = best.drain().collect();
            v.sort_unstable();
            v
        })
    }

    /// The neighbour-selection heuristic: keep a candidate only if it is closer to the base than to every
    /// neighbour kept so far (so links spread in all directions). `cands` sorted nearest first.
    fn select(&self, cands: &[Cand], max: usize) -> Vec<u32> {
        let mut kept: Vec<Cand> = Vec::with_capacity(max);
        for &c in cands {
            if kept.len() >= max {
                break;
            }
            let v = self.vector(c.id);
            if kept.iter().all(|k| (self.dist)(v, self.vector(k.id)) > c.d) {
                kept.push(c);
            }
        }
        kept.into_iter().map(|c| c.id).collect()
    }

    /// Adds a vector; returns its id.
    pub fn add(&mut self, v: &[f32]) -> u32 {
        assert_eq!(v.len(), self.dim, "vector dimension");
        let id = self.len() as u32;
        let mut v = v.to_vec();
        if self.metric == Metric::Cosine {
            normalize(&mut v);
        }
        self.data.extend_from_slice(&v);
        let level = self.random_level();
        self.levels.push(level as u8);
        self.l0.resize(self.l0.len() + self.m0 + 1, 0);
        self.upper.push(vec![0; level * (self.m + 1)]);
        let Some(mut ep) = self.entry else {
            self.entry = Some(id);
            self.max_level = level;
            return id;
        };
        let q = v;
        let mut cur = Cand {
            d: self.d(&q, ep),
            id: ep,
        };
        for l in (level + 1..=self.max_level).rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in self.links(cur.id, l) {
                    let d = self.d(&q, nb);
                    if d < cur.d {
                        cur = Cand { d, id: nb };
                        changed = true;
                    }
                }
            }
        }
        let mut entry = vec![cur];
        for l in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(&q, &entry, self.ef_construction, l);
            let chosen = self.select(&found, self.m);
            self.set_links(id, l, &chosen);
            let cap = if l == 0 { self.m0 } else { self.m };
            for &nb in &chosen {
                let existing: Vec<u32> = self.links(nb, l).to_vec();
                if existing.len() < cap {
                    let mut e = existing;
                    e.push(id);
                    self.set_links(nb, l, &e);
                } else {
                    let base = self.vector(nb).to_vec();
                    let mut all: Vec<Cand> = existing
                        .iter()
                        .chain(std::iter::once(&id))
                        .map(|&x| Cand {
                            d: self.d(&base, x),
                            id: x,
                        })
                        .collect();
                    all.sort_unstable();
                    let keep = self.select(&all, cap);
                    self.set_links(nb, l, &keep);
                }
            }
            entry = found;
        }
        if level > self.max_level {
            self.max_level = level;
            ep = id;
            self.entry = Some(ep);
        }
        id
    }

    /// The `k` nearest ids with their distances, nearest first; `ef` ≥ k trades speed for recall.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u32, f32)> {
        let Some(ep) = self.entry else {
            return Vec::new();
        };
        let mut q = query.to_vec();
        if self.metric == Metric::Cosine {
            normalize(&mut q);
        }
        let mut cur = Cand {
            d: self.d(&q, ep),
            id: ep,
        };
        for l in (1..=self.max_level).rev() {
            let mut changed = true;
            while changed {
                changed = false;
                for &nb in self.links(cur.id, l) {
                    let d = self.d(&q, nb);
                    if d < cur.d {
                        cur = Cand { d, id: nb };
                        changed = true;
                    }
                }
            }
        }
        let found = self.search_layer(&q, &[cur], ef.max(k), 0);
        found.into_iter().take(k).map(|c| (c.id, c.d)).collect()
    }

    /// Exact `k` nearest by brute force (ground truth and tiny collections).
    pub fn exact(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut q = query.to_vec();
        if self.metric == Metric::Cosine {
            normalize(&mut q);
        }
        let mut all: Vec<Cand> = (0..self.len() as u32)
            .map(|id| Cand {
                d: self.d(&q, id),
                id,
            })
            .collect();
        let k = k.min(all.len());
        if k == 0 {
            return Vec::new();
        }
        all.select_nth_unstable(k - 1);
        all.truncate(k);
        all.sort_unstable();
        all.into_iter().map(|c| (c.id, c.d)).collect()
    }

    /// Writes the index (versioned, little-endian).
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        for x in [
            VERSION,
            self.dim as u32,
            u32::from(self.metric == Metric::Cosine),
            self.m as u32,
            self.ef_construction as u32,
            self.len() as u32,
            self.entry.unwrap_or(u32::MAX),
            self.max_level as u32,
        ] {
            w.write_all(&x.to_le_bytes())?;
        }
        w.write_all(&self.levels)?;
        let mut buf = Vec::with_capacity(self.data.len() * 4);
        for x in &self.data {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
        buf.clear();
        for x in self.l0.iter().chain(self.upper.iter().flatten()) {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)
    }

    /// Reads an index written by [`Hnsw::write_to`].
    pub fn read_from(r: &mut impl Read) -> Result<Hnsw, HnswError> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(HnswError::Magic);
        }
        let mut head = [0u32; 8];
        for h in &mut head {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            *h = u32::from_le_bytes(b);
        }
        let [version, dim, cosine, m, efc, n, entry, max_level] = head;
        if version != VERSION {
            return Err(HnswError::Version(version));
        }
        let (dim, n, m) = (dim as usize, n as usize, m as usize);
        if dim == 0 || m < 2 || (n > 0 && entry as usize >= n) {
            return Err(HnswError::Corrupt("header".into()));
        }
        let mut levels = vec![0u8; n];
        r.read_exact(&mut levels)?;
        let mut raw = vec![0u8; n * dim * 4];
        r.read_exact(&mut raw)?;
        let data: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let m0 = 2 * m;
        let upper_len: usize = levels.iter().map(|&l| l as usize * (m + 1)).sum();
        let mut raw = vec![0u8; (n * (m0 + 1) + upper_len) * 4];
        r.read_exact(&mut raw)?;
        let ints: Vec<u32> = raw
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let l0 = ints[..n * (m0 + 1)].to_vec();
        let mut upper = Vec::with_capacity(n);
        let mut at = n * (m0 + 1);
        for &l in &levels {
            let len = l as usize * (m + 1);
            upper.push(ints[at..at + len].to_vec());
            at += len;
        }
        // Every link must point at a node.
        let bad = |v: &[u32], stride: usize, cap: usize| {
            v.chunks(stride).any(|c| {
                let k = c[0] as usize;
                k > cap || c[1..=k.min(c.len() - 1)].iter().any(|&x| x as usize >= n)
            })
        };
        if bad(&l0, m0 + 1, m0) || upper.iter().any(|u| !u.is_empty() && bad(u, m + 1, m)) {
            return Err(HnswError::Corrupt("a link points outside the index".into()));
        }
        let metric = if cosine == 1 {
            Metric::Cosine
        } else {
            Metric::L2
        };
        Ok(Hnsw {
            dim,
            metric,
            m,
            m0,
            ef_construction: efc as usize,
            data,
            levels,
            l0,
            upper,
            entry: (n > 0).then_some(entry),
            max_level: max_level as usize,
            rng: 0x1234_5678,
            dist: dist_fn(metric),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn kernels_agree_with_the_portable_code() {
        let p = points(2, 389, 3);
        let (a, b) = (&p[0], &p[1]);
        let l2 = dist_fn(Metric::L2)(a, b);
        assert!((l2 - l2_portable(a, b)).abs() < 1e-3, "{l2}");
        let c = dist_fn(Metric::Cosine)(a, b);
        assert!((c - cos_portable(a, b)).abs() < 1e-4);
        #[cfg(target_arch = "x86_64")]
        for (f, g) in [
            (avx::l2_safe as DistFn, l2_portable as DistFn),
            (avx::cos_safe, cos_portable),
        ] {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                assert!((f(a, b) - g(a, b)).abs() < 1e-3);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!((avx512::l2_safe(a, b) - l2_portable(a, b)).abs() < 1e-3);
            assert!((avx512::cos_safe(a, b) - cos_portable(a, b)).abs() < 1e-4);
        }
    }

    #[test]
    fn recall_is_high_and_the_file_round_trips() {
        for metric in [Metric::L2, Metric::Cosine] {
            let data = points(3000, 32, 7);
            let mut h = Hnsw::new(
                32,
                metric,
                HnswParams {
                    m: 12,
                    ef_construction: 100,
                    seed: 1,
                },
            );
            for v in &data {
                h.add(v);
            }
            let queries = points(100, 32, 99);
            let mut hits = 0;
            for q in &queries {
                let truth: std::collections::HashSet<u32> =
                    h.exact(q, 10).into_iter().map(|x| x.0).collect();
                hits += h
                    .search(q, 10, 64)
                    .iter()
                    .filter(|x| truth.contains(&x.0))
                    .count();
            }
            let recall = hits as f64 / 1000.0;
            assert!(recall > 0.9, "{metric:?} recall@10 {recall}");
            let mut bytes = Vec::new();
            h.write_to(&mut bytes).unwrap();
            let back = Hnsw::read_from(&mut bytes.as_slice()).unwrap();
            for q in queries.iter().take(10) {
                assert_eq!(back.search(q, 10, 64), h.search(q, 10, 64));
            }
            // Truncated and corrupted files are refused.
            assert!(Hnsw::read_from(&mut &bytes[..bytes.len() - 10]).is_err());
            let mut bad = bytes.clone();
            bad[0] = b'X';
            assert!(matches!(
                Hnsw::read_from(&mut bad.as_slice()),
                Err(HnswError::Magic)
            ));
        }
        let empty = Hnsw::new(4, Metric::L2, HnswParams::default());
        assert!(empty.search(&[0.0; 4], 5, 10).is_empty());
    }
}
