//! The run's figures for machines (`--json FILE`) and as a chart
//! (`--chart FILE.svg`): every figure beside its floor and beside the
//! fastest peer, as ratios.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::against::AgainstFloor;
use crate::floors::Floors;
use crate::peers::Peers;
use crate::report::measured;
use crate::stats::thousands;
use crate::workload::Results;
use crate::Plan;

/// One figure against the fastest peer.
struct AgainstPeer<'a> {
    figure: &'a str,
    ours: f64,
    peer: f64,
    who: &'a str,
    /// `ours / peer` for rates, `peer / ours` for times: above 1 is better.
    advantage: f64,
    /// Rates (or times).
    higher_is_better: bool,
}

/// A rate as `12,345`, a time in ms as `1.23`.
fn show(x: f64, rate: bool) -> String {
    if rate {
        thousands(x)
    } else {
        format!("{x:.2} ms")
    }
}

fn against_peers<'a>(r: &Results, peers: &'a Peers) -> Vec<AgainstPeer<'a>> {
    peers
        .figures
        .iter()
        .filter_map(|f| {
            let ours = measured(&f.id, r)?;
            let advantage = if f.higher_is_better {
                ours / f.peer
            } else {
                f.peer / ours.max(1e-9)
            };
            Some(AgainstPeer {
                figure: &f.figure,
                ours,
                peer: f.peer,
                who: &f.who,
                advantage,
                higher_is_better: f.higher_is_better,
            })
        })
        .collect()
}

/// The run as one JSON document.
pub(crate) fn to_json(
    plan: &Plan,
    floors: &Floors,
    against: &[AgainstFloor],
    r: &Results,
    peers: &Peers,
) -> Value {
    let ids = [
        "single_c1",
        "single_many",
        "bulk",
        "drain_c1",
        "drain_c16",
        "embedded_c1",
        "embedded_c16",
        "latency_p50",
        "latency_p99",
    ];
    let figures: serde_json::Map<String, Value> = ids
        .iter()
        .filter_map(|id| measured(id, r).map(|v| (id.to_string(), json!(v))))
        .collect();
    let vs_peers: Vec<Value> = peers
        .figures
        .iter()
        .filter_map(|f| {
            let ours = measured(&f.id, r)?;
            Some(json!({
                "id": f.id, "ours": ours, "peer": f.peer, "who": f.who,
                "ratio": ours / f.peer, "target": f.target,
                "met": if f.higher_is_better { ours >= f.target } else { ours <= f.target },
            }))
        })
        .collect();
    json!({
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "durability": plan.durability.flag(),
        "store": plan.store,
        "jobs": plan.n,
        "latency_samples": plan.samples,
        "clients": plan.clients,
        "floors": floors,
        "figures": figures,
        "against_floors": against,
        "against_peers": vs_peers,
        "peers_source": peers.source,
        "w4": r.backlog.as_ref().map(|b| json!({
            "waiting": b.jobs,
            "fill_per_s": b.fill_per_s,
            "empty_before": b.empty,
            "empty_after": b.empty_after,
            "backlog": b.full,
            "rss_mib_filled": b.memory_filled.map(|m| m.rss_mib()),
            "rss_mib_after": b.memory_after.map(|m| m.rss_mib()),
            "peak_mib": b.memory_after.map(|m| m.hwm_mib()),
        })),
    })
}

/// Writes `value` to `path`, pretty-printed.
pub(crate) fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart: one row per figure, its bar the ratio to the
/// floor (left panel: 1.0 is the physical limit, the tick is the target)
/// and to the fastest peer (right panel: 1.0 is parity, log scale).
pub(crate) fn chart_svg(
    plan: &Plan,
    against: &[AgainstFloor],
    r: &Results,
    peers: &Peers,
) -> String {
    let vs_peers = against_peers(r, peers);
    let rows = against.len().max(vs_peers.len()).max(1);
    let (label_w, panel_w, row_h, top) = (330.0, 330.0, 26.0, 64.0);
    let width = label_w + panel_w + 330.0;
    let height = top + rows as f64 * row_h * 2.0 + 50.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-size="15" font-weight="bold">orderly bench: each figure against its floor and against the fastest peer</text>
<text x="10" y="38" fill="#555">store {}, durability {}, N = {}, {} build; floors and figures measured in the same run</text>
"##,
        plan.store,
        plan.durability.flag(),
        plan.n,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    // Left panel: ratio to the floor, 0..1.2.
    let x0 = label_w;
    let scale = |ratio: f64| (ratio.clamp(0.0, 1.2) / 1.2) * (panel_w - 20.0);
    let _ = write!(
        s,
        r##"<text x="{x0}" y="{}" font-weight="bold">÷ floor (1.0 = this machine's limit; tick = target)</text>
<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999" stroke-dasharray="3,3"/>
"##,
        top - 6.0,
        x0 + scale(1.0),
        top,
        x0 + scale(1.0),
        top + rows as f64 * row_h,
    );
    for (i, a) in against.iter().enumerate() {
        let y = top + i as f64 * row_h;
        // For times the bar shows limit / value, so longer is better too.
        let ratio = if a.higher_is_better {
            a.ratio
        } else {
            1.0 / a.ratio.max(1e-9)
        };
        let target = if a.higher_is_better {
            a.target_ratio
        } else {
            1.0
        };
        let color = if a.met { "#2a9d58" } else { "#d1495b" };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>
<rect x="{x0}" y="{}" width="{:.1}" height="{}" fill="{color}"/>
<line x1="{:.1}" y1="{}" x2="{:.1}" y2="{}" stroke="#000" stroke-width="2"/>
<text x="{:.1}" y="{}">{ratio:.2}</text>
"##,
            x0 - 8.0,
            y + 16.0,
            esc(&a.figure),
            y + 4.0,
            scale(ratio),
            row_h - 8.0,
            x0 + scale(target),
            y + 2.0,
            x0 + scale(target),
            y + row_h - 2.0,
            x0 + scale(ratio) + 4.0,
            y + 16.0,
        );
    }
    // Right panel: advantage over the fastest peer, log2 scale 1/8..16.
    let x1 = label_w;
    let top2 = top + rows as f64 * row_h + 30.0;
    let lscale = |adv: f64| ((adv.clamp(1.0 / 8.0, 16.0).log2() + 3.0) / 7.0) * (panel_w - 20.0);
    let _ = write!(
        s,
        r##"<text x="{x1}" y="{}" font-weight="bold">vs the fastest peer (1.0 = parity, log scale)</text>
<line x1="{:.1}" y1="{}" x2="{:.1}" y2="{}" stroke="#999" stroke-dasharray="3,3"/>
"##,
        top2 - 6.0,
        x1 + lscale(1.0),
        top2,
        x1 + lscale(1.0),
        top2 + rows as f64 * row_h,
    );
    for (i, p) in vs_peers.iter().enumerate() {
        let y = top2 + i as f64 * row_h;
        let color = if p.advantage >= 1.0 {
            "#2a9d58"
        } else {
            "#d1495b"
        };
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>
<rect x="{x1}" y="{}" width="{:.1}" height="{}" fill="{color}"/>
<text x="{:.1}" y="{}">{:.2}x: {} vs {} ({})</text>
"##,
            x1 - 8.0,
            y + 16.0,
            esc(p.figure),
            y + 4.0,
            lscale(p.advantage),
            row_h - 8.0,
            x1 + lscale(p.advantage) + 4.0,
            y + 16.0,
            p.advantage,
            show(p.ours, p.higher_is_better),
            show(p.peer, p.higher_is_better),
            esc(p.who),
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text from a figure's label cannot break out of the SVG.
    #[test]
    fn labels_are_escaped() {
        assert_eq!(esc("a<b>&\"c"), "a&lt;b&gt;&amp;&quot;c");
    }
}
