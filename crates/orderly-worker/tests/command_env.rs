//! What a child of the server's command executor sees of the server's
//! environment ([`Env::AllowList`]), against what `orderly worker`'s child
//! sees ([`Env::Inherit`]).
//!
//! The server's variables are set on this test process itself, so this file
//! holds one test: it sets them before any other thread runs.

use std::collections::BTreeMap;

use orderly_worker::command::{Env, ALLOWED_ENV, JOB_VARS};
use orderly_worker::{CommandHandler, Handler, Job, JobContext};
use serde_json::{json, Value};

/// The server's secret-looking settings.
const SECRETS: [(&str, &str); 5] = [
    ("ORDERLY_TOKEN", "secret-token-1"),
    ("ORDERLY_READ_TOKEN", "secret-token-2"),
    ("ORDERLY_DATABASE_URL", "postgres://u:secret@db/orderly"),
    ("AWS_SECRET_ACCESS_KEY", "secret-aws"),
    ("ORDERLY_KEY", "stale-key-of-the-server"),
];

/// The environment `env` prints for `h`'s child, as a map.
fn env_of(h: &CommandHandler, job: Job) -> BTreeMap<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out: Value = rt
        .block_on(h.handle(job, JobContext::new()))
        .unwrap_or_else(|f| panic!("env failed: {f:?}"));
    let text = out.as_str().unwrap_or_else(|| panic!("not text: {out}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn allow_list_keeps_the_servers_secrets_from_the_job() {
    for (k, v) in SECRETS {
        std::env::set_var(k, v);
    }
    std::env::set_var("LC_MESSAGES", "C");
    std::env::set_var("TZ", "UTC");
    let path = std::env::var("PATH").expect("this test needs a PATH");

    let job = Job {
        id: "j-9".into(),
        queue: "exec".into(),
        key: None,
        seq: 41,
        attempt: 3,
        payload: json!(null),
        timeout_ms: None,
    };
    let allow = CommandHandler::new(vec!["env".into()], Env::AllowList)
        .unwrap()
        .env("QUEUE_SETTING", "from-the-queue")
        .env("ORDERLY_JOB_ID", "forged")
        .marker("ORDERLY_NODE", "node-a")
        .unwrap();
    let seen = env_of(&allow, job.clone());
    for (k, _) in SECRETS {
        assert!(!seen.contains_key(k), "{k} reached the child: {seen:?}");
    }
    for (k, v) in &seen {
        assert!(!v.contains("secret"), "{k}={v} reached the child: {seen:?}");
    }
    assert_eq!(seen.get("PATH"), Some(&path), "{seen:?}");
    assert_eq!(seen.get("LC_MESSAGES").map(String::as_str), Some("C"));
    assert_eq!(seen.get("TZ").map(String::as_str), Some("UTC"));
    assert_eq!(
        seen.get("QUEUE_SETTING").map(String::as_str),
        Some("from-the-queue")
    );
    assert_eq!(seen.get("ORDERLY_NODE").map(String::as_str), Some("node-a"));
    assert_eq!(seen.get("ORDERLY_JOB_ID").map(String::as_str), Some("j-9"));
    assert_eq!(seen.get("ORDERLY_QUEUE").map(String::as_str), Some("exec"));
    assert_eq!(seen.get("ORDERLY_SEQ").map(String::as_str), Some("41"));
    assert_eq!(seen.get("ORDERLY_ATTEMPT").map(String::as_str), Some("3"));
    // Nothing but the allow-list, the queue's, the marker and the job's.
    for k in seen.keys() {
        assert!(
            ALLOWED_ENV.contains(&k.as_str())
                || k.starts_with("LC_")
                || JOB_VARS.contains(&k.as_str())
                || ["QUEUE_SETTING", "ORDERLY_NODE"].contains(&k.as_str()),
            "{k} reached the child: {seen:?}"
        );
    }

    // `orderly worker` (Inherit): the worker's own environment goes along,
    // but a key it has is not taken for the job's.
    let inherit = CommandHandler::new(vec!["env".into()], Env::Inherit).unwrap();
    let seen = env_of(&inherit, job);
    assert_eq!(
        seen.get("ORDERLY_TOKEN").map(String::as_str),
        Some("secret-token-1")
    );
    assert_eq!(seen.get("PATH"), Some(&path));
    assert!(!seen.contains_key("ORDERLY_KEY"), "{seen:?}");
    assert!(!seen.contains_key("ORDERLY_NODE"), "{seen:?}");
}
