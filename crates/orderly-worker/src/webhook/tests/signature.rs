//! The signature as a receiver checks it, on a real request: in Rust by the
//! steps `docs/webhooks.md` gives, and with the Python snippet of that file
//! itself, so the page cannot drift from the code.

use std::path::Path;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::*;

/// Not ASCII: the key is the secret's UTF-8 bytes.
const SECRET: &str = "whsec_tëst-secret";
/// The replay window `docs/webhooks.md` asks receivers to enforce.
const WINDOW_SECS: u64 = 300;

/// Checks `header` for `body` at `now` (Unix seconds) step by step as
/// `docs/webhooks.md` describes, recomputing the MAC from the raw body.
fn verify(secret: &[u8], header: &str, body: &[u8], now: u64) -> Result<(), &'static str> {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) if t.is_none() => t = Some(value),
            Some(("v1", value)) if v1.is_none() => v1 = Some(value),
            _ => {}
        }
    }
    let (t, v1) = (t.ok_or("no t")?, v1.ok_or("no v1")?);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err("t is not decimal digits");
    }
    let stamp: u64 = t.parse().map_err(|_| "t is too large")?;
    if now.abs_diff(stamp) > WINDOW_SECS {
        return Err("outside the replay window");
    }
    let received = hex_lower(v1).ok_or("v1 is not lowercase hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&received)
        .map_err(|_| "signature mismatch")
}

/// Lowercase hex digits to bytes.
fn hex_lower(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signed request as the receiver got it: (signature header, raw body).
async fn signed_request() -> (String, Bytes) {
    let r = answering(StatusCode::OK, "").await;
    let h = WebhookHandler::new(&r.url("/"))
        .unwrap()
        .secret(Some(SECRET.into()));
    run(&h).await.unwrap();
    let seen = r.seen();
    assert_eq!(seen.len(), 1);
    (
        seen[0].header("orderly-signature").to_string(),
        seen[0].body.clone(),
    )
}

/// A known answer, computed independently of this crate.
#[test]
fn known_answer() {
    assert_eq!(
        crate::webhook::signature::header_value("whsec_ü".as_bytes(), 1_700_000_000, br#"{"a":1}"#),
        "t=1700000000,v1=08c340b91ed39b25aba376ca68db85296cfb4ec08d9db9e17691c3c8779f34f0"
    );
}

/// A real request's signature has the documented form and verifies; a
/// changed body, another secret or a time outside the window does not.
#[tokio::test]
async fn signature_verifies_as_documented() {
    let (header, body) = signed_request().await;
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("not t=…,v1=…: {header}"));
    assert!(t.bytes().all(|b| b.is_ascii_digit()), "{header}");
    assert_eq!(v1.len(), 64, "{header}");
    assert!(hex_lower(v1).is_some(), "{header}");
    let stamp: u64 = t.parse().unwrap();
    assert!(
        unix_secs().abs_diff(stamp) <= WINDOW_SECS,
        "a stale t: {header}"
    );

    let key = SECRET.as_bytes();
    assert_eq!(verify(key, &header, &body, stamp), Ok(()));
    assert_eq!(verify(key, &header, &body, stamp + WINDOW_SECS), Ok(()));
    assert_eq!(verify(key, &header, &body, stamp - WINDOW_SECS), Ok(()));
    let mut changed = body.to_vec();
    changed[body.len() / 2] ^= 1;
    assert_eq!(
        verify(key, &header, &changed, stamp),
        Err("signature mismatch")
    );
    assert_eq!(
        verify(b"another secret", &header, &body, stamp),
        Err("signature mismatch")
    );
    assert_eq!(
        verify(key, &header, &body, stamp + WINDOW_SECS + 1),
        Err("outside the replay window")
    );
    assert_eq!(
        verify(key, &header, &body, stamp - WINDOW_SECS - 1),
        Err("outside the replay window")
    );
    let replayed_later = header.replacen(&format!("t={t}"), &format!("t={}", stamp + 1), 1);
    assert_eq!(
        verify(key, &replayed_later, &body, stamp),
        Err("signature mismatch")
    );
}

/// The documents holding the receiver's Python snippet between markers.
const SNIPPET_DOCS: [&str; 2] = ["docs/webhooks.md", "README.md"];

/// The Python snippet between the markers of `doc` (relative to the
/// repository root).
fn python_snippet(doc: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(doc);
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let begin = "<!-- orderly-signature-verify:begin -->";
    let end = "<!-- orderly-signature-verify:end -->";
    let start = doc.find(begin).expect("no begin marker") + begin.len();
    let stop = start + doc[start..].find(end).expect("no end marker");
    let block = doc[start..stop].trim();
    block
        .strip_prefix("```python")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the markers hold one ```python block")
        .to_string()
}

/// Runs the documented snippet with `python3` on a real request (skipped,
/// saying so, where there is no python3).
#[tokio::test]
async fn python_snippet_verifies_a_real_request() {
    let have_python = tokio::process::Command::new("python3")
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !have_python {
        eprintln!("skipped: no python3 to run the snippet of docs/webhooks.md");
        return;
    }
    let (header, body) = signed_request().await;
    let stamp: u64 = header[2..header.find(',').unwrap()].parse().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    for doc in SNIPPET_DOCS {
        let snippet = file("verify.py", python_snippet(doc).as_bytes());
        check_snippet(doc, &snippet, &dir, &header, &body, stamp).await;
    }
}

/// Runs the cases of [`python_snippet_verifies_a_real_request`] against one
/// document's snippet, saved at `snippet`.
async fn check_snippet(
    doc: &str,
    snippet: &str,
    dir: &tempfile::TempDir,
    header: &str,
    body: &[u8],
    stamp: u64,
) {
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let snippet = snippet.to_string();
    let header_file = file("signature.txt", header.as_bytes());
    let body_file = file("body.bin", body);
    let mut changed = body.to_vec();
    changed.push(b' ');
    let changed_file = file("changed.bin", &changed);
    let harness = file(
        "harness.py",
        br#"import sys
namespace = {}
exec(compile(open(sys.argv[1]).read(), "docs/webhooks.md", "exec"), namespace)
secret, header_file, body_file, now = sys.argv[2:6]
header = open(header_file).read()
body = open(body_file, "rb").read()
ok = namespace["verify_orderly_signature"](secret.encode(), header, body, None if now == "-" else int(now))
print("valid" if ok else "invalid")
"#,
    );
    let python = |secret: &'static str, body: String, now: String| {
        let args = [
            harness.clone(),
            snippet.clone(),
            secret.to_string(),
            header_file.clone(),
            body,
            now,
        ];
        async move {
            let out = tokio::process::Command::new("python3")
                .args(&args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "python3 failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let at = |secs: u64| secs.to_string();
    for (secret, body, now, expected) in [
        (SECRET, &body_file, "-".to_string(), "valid"),
        (SECRET, &body_file, at(stamp + WINDOW_SECS), "valid"),
        (SECRET, &body_file, at(stamp - WINDOW_SECS), "valid"),
        (SECRET, &changed_file, "-".to_string(), "invalid"),
        ("whsec_another", &body_file, "-".to_string(), "invalid"),
        (SECRET, &body_file, at(stamp + WINDOW_SECS + 1), "invalid"),
        (SECRET, &body_file, at(stamp - WINDOW_SECS - 1), "invalid"),
    ] {
        let got = python(secret, body.clone(), now.clone()).await;
        assert_eq!(
            got, expected,
            "{doc}: secret {secret:?}, body {body}, now {now}"
        );
    }
}
