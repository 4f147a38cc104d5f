//! `orderly bench` end to end on a tiny run: it starts its own server,
//! measures the floors and a workload, and writes the JSON and the chart,
//! whose figures agree with each other (no figure is judged: figures live
//! in the benchmark, not in tests).

use std::process::Command;

use serde_json::Value;

/// A run of one small workload writes floors, the figure against its floor,
/// and a chart that names it.
#[test]
fn bench_writes_floors_json_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let svg_path = dir.path().join("bench.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args(["bench", "--only", "single-c1", "--jobs", "50", "--json"])
        .arg(&json_path)
        .arg("--chart")
        .arg(&svg_path)
        .env_remove("ORDERLY_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("### Floors"), "{stdout}");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let floors = &v["floors"];
    let rtt = floors["rtt"]["mean"].as_f64().unwrap();
    let commit = floors["commit"]["mean"].as_f64().unwrap();
    assert!(rtt > 0.0 && commit > 0.0, "{floors}");
    assert!(floors["healthz_many_per_s"].as_f64().unwrap() > 0.0);
    let ours = v["figures"]["single_c1"].as_f64().unwrap();
    assert!(ours > 0.0);
    let row = v["against_floors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "single_c1")
        .expect("single_c1 against its floor");
    let floor = row["floor"].as_f64().unwrap();
    assert!((floor - 1_000.0 / (rtt + commit)).abs() < 1e-6 * floor);
    assert!((row["ratio"].as_f64().unwrap() - ours / floor).abs() < 1e-9 * ours);
    assert!(v["figures"].get("drain_c1").is_none(), "only single-c1 ran");

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.contains("W1 enqueue, 1 sequential client"));
}
