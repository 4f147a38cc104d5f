//! `orderly bench` (being written).

/// `orderly bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

pub async fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
