//! Figures a store keeps about its own work, for metrics: plain numbers,
//! cumulative since the store opened, so any exporter can read them.

/// A histogram a store keeps: how many observations fell in each bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Upper bounds of the buckets, increasing; the last bucket (above the
    /// last bound) is implied.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative): one more entry than
    /// `bounds`, the last for values above every bound.
    pub counts: Vec<u64>,
    /// Sum of every observation.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Distribution {
    /// An empty histogram with these upper bounds (sorted here).
    pub fn new(mut bounds: Vec<f64>) -> Self {
        bounds.retain(|b| b.is_finite());
        bounds.sort_by(f64::total_cmp);
        Distribution {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum: 0.0,
            count: 0,
        }
    }

    /// Bounds `start`, `start * factor`, … (`n` of them).
    pub fn exponential(start: f64, factor: f64, n: usize) -> Self {
        Self::new(
            std::iter::successors(Some(start), |b| Some(b * factor))
                .take(n)
                .collect(),
        )
    }

    /// Counts `value` in its bucket (the first whose bound is not below it).
    pub fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }
}

/// What a store's writer has done since the store opened.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterStats {
    /// Transactions committed (each one group of requests).
    pub commits: u64,
    /// Requests per committed group.
    pub group_sizes: Distribution,
    /// Seconds each fsynced commit took, its fsync included.
    pub fsync_seconds: Distribution,
    /// Claims that waited in the writer (parked long polls) and took jobs
    /// inside the commit that gave them work.
    pub parked_claim_starts: u64,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            commits: 0,
            group_sizes: Distribution::exponential(1.0, 2.0, 13),
            fsync_seconds: Distribution::exponential(0.000_1, 2.0, 16),
            parked_claim_starts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Distribution;

    #[test]
    fn observations_land_in_the_first_bucket_not_below_them() {
        let mut d = Distribution::new(vec![4.0, 1.0, 2.0]);
        assert_eq!(d.bounds, [1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 4.0, 9.0] {
            d.observe(v);
        }
        assert_eq!(d.counts, [2, 1, 1, 1]);
        assert_eq!((d.count, d.sum), (5, 16.0));
        assert_eq!(
            Distribution::exponential(1.0, 2.0, 4).bounds,
            [1.0, 2.0, 4.0, 8.0]
        );
    }
}
