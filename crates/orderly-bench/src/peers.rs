//! The peers' figures and Orderly's targets, read from a data file
//! (`crates/orderly-bench/peers.json`, built in; `--peers FILE` reads
//! another) rather than written in code. The file says where its figures
//! came from.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The `peers.json` in the repository.
const BUILTIN: &str = include_str!("../peers.json");

/// The reference figures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    /// Where the figures came from.
    pub source: String,
    /// One row of the comparison table each.
    pub figures: Vec<PeerFigure>,
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFigure {
    /// Which of Orderly's figures it compares with: `single_c1`,
    /// `single_many`, `bulk`, `drain_c1`, `drain_c16`, `latency_p50`,
    /// `latency_p99`.
    pub id: String,
    /// Row label.
    pub figure: String,
    /// The best peer's figure.
    pub peer: f64,
    /// Who, and how durable.
    pub who: String,
    /// Orderly's target.
    pub target: f64,
    /// `true` when higher is better (rates), `false` for latencies.
    pub higher_is_better: bool,
}

/// The ids [`PeerFigure::id`] may take.
pub const FIGURE_IDS: [&str; 7] = [
    "single_c1",
    "single_many",
    "bulk",
    "drain_c1",
    "drain_c16",
    "latency_p50",
    "latency_p99",
];

impl Peers {
    /// The figures built in from `peers.json`.
    pub fn builtin() -> anyhow::Result<Self> {
        Self::parse(BUILTIN).context("the built-in peers.json")
    }

    /// The figures of a JSON file shaped like `peers.json`.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("peers file {}", path.display()))
    }

    /// Parses and checks the figures.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let peers: Peers = serde_json::from_str(text)?;
        for f in &peers.figures {
            if !FIGURE_IDS.contains(&f.id.as_str()) {
                bail!(
                    "unknown figure id {:?}; use one of {}",
                    f.id,
                    FIGURE_IDS.join(", ")
                );
            }
            if !(f.peer.is_finite() && f.peer > 0.0 && f.target.is_finite()) {
                bail!("figure {:?}: peer must be positive, target finite", f.id);
            }
        }
        Ok(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's file parses and covers the compared figures.
    #[test]
    fn builtin_parses() {
        let p = Peers::builtin().unwrap();
        assert!(p.source.contains("peers.md"));
        let ids: Vec<&str> = p.figures.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "single_c1",
                "bulk",
                "drain_c1",
                "drain_c16",
                "latency_p50",
                "latency_p99"
            ]
        );
    }

    /// An unknown id is refused, naming the known ones.
    #[test]
    fn unknown_id_is_refused() {
        let text = r#"{"source": "x", "figures": [{"id": "nope", "figure": "f", "peer": 1.0, "who": "w", "target": 1.0, "higher_is_better": true}]}"#;
        let e = Peers::parse(text).unwrap_err().to_string();
        assert!(e.contains("drain_c1"), "{e}");
    }
}
