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

/// The test database (`ORDERLY_TEST_DATABASE_URL`).
fn database_url() -> String {
    std::env::var("ORDERLY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether `schema` exists on the test database (a missing PostgreSQL is a
/// loud failure).
fn schema_exists(schema: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = database_url();
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("this test needs PostgreSQL at {url}: {e}"));
        tokio::spawn(conn);
        client
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .await
            .unwrap()
            .is_some()
    })
}

/// A small run against a PostgreSQL-backed server (`--database-url`): every
/// HTTP workload's figure and every floor is in the JSON (the `commit`
/// floor then being a PostgreSQL commit), the report says which store it
/// measured, and the run's fresh schema is gone after.
#[test]
fn bench_on_postgres_has_every_figure_and_floor() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let schema = format!("t_bench_{}", std::process::id());
    assert!(!schema_exists(&schema), "left over from an earlier run");
    let out = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args(["bench", "--only", "enqueue,drain,latency"])
        .args(["--jobs", "60", "--latency-samples", "20", "--clients", "4"])
        .args([
            "--database-url",
            &database_url(),
            "--database-schema",
            &schema,
        ])
        .arg("--json")
        .arg(&json_path)
        .env_remove("ORDERLY_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("**PostgreSQL store**"), "{stdout}");
    assert!(stdout.contains("### Floors"), "{stdout}");
    assert!(!schema_exists(&schema), "the run's schema is dropped after");

    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(v["store"], "PostgreSQL");
    let floors = &v["floors"];
    for floor in ["rtt", "commit"] {
        for stat in ["p50", "mean", "p99"] {
            let x = floors[floor][stat].as_f64();
            assert!(x.is_some_and(|x| x > 0.0), "{floor} {stat}: {floors}");
        }
    }
    assert!(floors["healthz_many_per_s"].as_f64().unwrap() > 0.0);
    for id in [
        "single_c1",
        "single_many",
        "bulk",
        "drain_c1",
        "drain_c16",
        "latency_p50",
        "latency_p99",
    ] {
        let x = v["figures"][id].as_f64();
        assert!(x.is_some_and(|x| x > 0.0), "{id}: {}", v["figures"]);
    }
    let rows = v["against_floors"].as_array().unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        assert!(row["floor"].as_f64().unwrap() > 0.0, "{row}");
    }
}

/// W4 on a small backlog: three queues measured (empty before the fill, the
/// backlog, empty after the fill on the same store), each operation's cost
/// in the JSON, and the table says which empty queue the ratio is against.
#[test]
fn bench_w4_measures_an_empty_queue_before_and_after_the_fill() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("w4.json");
    let out = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .args(["bench", "--only", "w4", "--backlog", "500", "--json"])
        .arg(&json_path)
        .env_remove("ORDERLY_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("empty after the fill"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let w4 = &v["w4"];
    assert_eq!(w4["waiting"], 500, "{w4}");
    for side in ["empty_before", "empty_after", "backlog"] {
        for op in ["enqueue", "claim", "get", "list", "metrics"] {
            let p50 = w4[side][op]["p50"].as_f64().unwrap_or(-1.0);
            let p99 = w4[side][op]["p99"].as_f64().unwrap_or(-1.0);
            assert!(p50 > 0.0 && p99 >= p50, "{side}.{op}: {w4}");
        }
    }
    // The last job's position was checked by the bench: the whole line ahead.
    assert_eq!(w4["backlog"]["last_position"], 500 + 200 - 1, "{w4}");
    assert_eq!(w4["empty_after"]["last_position"], 200 - 1, "{w4}");
    assert!(w4["rss_mib_filled"].as_f64().unwrap() > 0.0, "{w4}");
}
