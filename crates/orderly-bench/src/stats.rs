//! FIFO figures and statistics, computed as the peers' harness computes
//! them: inversions (merge sort, O(n log n)), maximum displacement,
//! redeliveries, nearest-rank percentiles.

use std::collections::HashSet;

/// Ordering quality of a start order (W2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fifo {
    /// Pairs started in the wrong order (0 = exact FIFO).
    pub(crate) inversions: u64,
    /// Largest |position in start order − position in seq order|.
    pub(crate) max_displacement: u64,
    /// Starts of a job already started (redeliveries).
    pub(crate) duplicates: u64,
    /// Of the `expected` jobs, how many never appear.
    pub(crate) missing: u64,
}

/// FIFO figures of `order` (seqs in start order), as the peers' harness
/// computes them: each job's first start, ranked among the seqs seen.
pub(crate) fn fifo(order: &[i64], expected: u64) -> Fifo {
    let mut seen = HashSet::with_capacity(order.len());
    let firsts: Vec<i64> = order.iter().copied().filter(|s| seen.insert(*s)).collect();
    let mut sorted = firsts.clone();
    sorted.sort_unstable();
    let ranks: Vec<usize> = firsts
        .iter()
        .map(|s| sorted.binary_search(s).unwrap_or_default())
        .collect();
    let max_displacement = ranks
        .iter()
        .enumerate()
        .map(|(k, r)| k.abs_diff(*r) as u64)
        .max()
        .unwrap_or(0);
    Fifo {
        inversions: inversions(&ranks),
        max_displacement,
        duplicates: (order.len() - firsts.len()) as u64,
        missing: expected.saturating_sub(firsts.len() as u64),
    }
}

/// Pairs `i < j` with `v[i] > v[j]`, by bottom-up merge sort: O(n log n).
pub(crate) fn inversions(v: &[usize]) -> u64 {
    let n = v.len();
    let mut a = v.to_vec();
    let mut b = vec![0usize; n];
    let mut count = 0u64;
    let mut width = 1;
    while width < n {
        let mut lo = 0;
        while lo < n {
            let mid = (lo + width).min(n);
            let hi = (lo + 2 * width).min(n);
            let (mut i, mut j, mut k) = (lo, mid, lo);
            while i < mid && j < hi {
                if a[i] <= a[j] {
                    b[k] = a[i];
                    i += 1;
                } else {
                    b[k] = a[j];
                    j += 1;
                    count += (mid - i) as u64;
                }
                k += 1;
            }
            b[k..k + (mid - i)].copy_from_slice(&a[i..mid]);
            k += mid - i;
            b[k..k + (hi - j)].copy_from_slice(&a[j..hi]);
            lo = hi;
        }
        std::mem::swap(&mut a, &mut b);
        width *= 2;
    }
    count
}

/// The `p`th percentile of sorted values, as the peers' harness takes it
/// (nearest rank: index round(p/100 × (n − 1))).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// `12345.6` → `12,346`.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (k, ch) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Unit tests of the FIFO and statistics helpers.
#[cfg(test)]
mod tests {
    use super::*;

    /// Inversions by brute force, for comparison.
    fn brute(v: &[usize]) -> u64 {
        let mut c = 0;
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                if v[i] > v[j] {
                    c += 1;
                }
            }
        }
        c
    }

    /// The merge-sort count equals the quadratic count.
    #[test]
    fn inversions_match_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for len in 0..70 {
            let v: Vec<usize> = (0..len).map(|_| rng.random_range(0..20)).collect();
            assert_eq!(inversions(&v), brute(&v), "{v:?}");
        }
        assert_eq!(inversions(&[3, 2, 1, 0]), 6);
    }

    /// Inversions, displacement, duplicates and missing jobs of a start order.
    #[test]
    fn fifo_figures() {
        let f = fifo(&[10, 11, 12, 13], 4);
        assert_eq!((f.inversions, f.max_displacement), (0, 0));
        let f = fifo(&[13, 10, 11, 12, 11], 5);
        assert_eq!(f.inversions, 3);
        assert_eq!(f.max_displacement, 3);
        assert_eq!(f.duplicates, 1);
        assert_eq!(f.missing, 1);
    }

    /// Nearest-rank percentiles as the peers' harness, and thousands separators.
    #[test]
    fn percentile_and_format() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(thousands(36_783.4), "36,783");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000_000.0), "1,000,000");
    }
}
