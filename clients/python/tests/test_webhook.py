"""``orderly.verify_signature``, ``orderly.signature_header`` and
``orderly.webhook_job`` on their own: a known answer computed outside Python
(``openssl dgst -sha256 -hmac``), every way a header can be wrong, the
replay window both ways, and agreement with the snippet ``docs/webhooks.md``
gives receivers. The end-to-end check, the real server signing real
requests to a FastAPI route, is in ``test_fastapi_example.py``."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

import orderly
from support import REPO

SECRET = "whsec_tëst-secret"
"""Not ASCII: the key is the secret's UTF-8 bytes."""
T = 1767225600
BODY = (
    b'{"attempt":1,"id":"c880cc1b-dc27-4175-b616-29a69322d156","key":null,'
    b'"payload":{"uid":"c880cc1b-dc27-4175-b616-29a69322d156"},"queue":"requests","seq":1}'
)
V1 = "ad9ed8e07d7f8576db8d4f8da65cf4c9a34d01e8ad94d6b8bd4459f6c75921b9"
"""``printf '%s' "$T.$BODY" | openssl dgst -sha256 -hmac "$SECRET"``."""
HEADER = f"t={T},v1={V1}"


def mac(secret: bytes, t: str, body: bytes) -> str:
    return hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()


def test_a_known_signature_verifies_with_the_secret_as_text_or_bytes():
    assert orderly.verify_signature(SECRET, HEADER, BODY, now=T)
    assert orderly.verify_signature(SECRET.encode(), HEADER, BODY, now=T)
    assert orderly.verify_signature(SECRET, HEADER, bytearray(BODY), now=T + 0.5)
    assert orderly.signature_header(SECRET, BODY, timestamp=T) == HEADER


def test_the_current_time_is_the_default_clock():
    assert orderly.verify_signature(SECRET, orderly.signature_header(SECRET, BODY), BODY)
    stale = orderly.signature_header(SECRET, BODY, timestamp=int(time.time()) - 600)
    assert not orderly.verify_signature(SECRET, stale, BODY)


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b'"seq":1', b'"seq":2'),
        BODY + b"\n",
        b" " + BODY,
        json.dumps(json.loads(BODY)).encode(),  # parsed and serialized again
        b"",
    ],
)
def test_an_altered_body_is_refused(body: bytes):
    assert body != BODY
    assert not orderly.verify_signature(SECRET, HEADER, body, now=T)


@pytest.mark.parametrize("secret", ["whsec_test-secret", "whsec_tëst-secret ", b"whsec_t\xebst-secret", "x"])
def test_a_wrong_secret_is_refused(secret: str | bytes):
    assert not orderly.verify_signature(secret, HEADER, BODY, now=T)


@pytest.mark.parametrize(
    ("now", "tolerance", "ok"),
    [
        (T + 300, 300, True),
        (T + 300.5, 300, False),  # captured and replayed later
        (T + 301, 300, False),
        (T - 300, 300, True),
        (T - 301, 300, False),  # a timestamp from the future
        (T + 3600, 300, False),
        (T + 3600, 3600, True),
        (T + 1, 0, False),
        (T, 0, True),
    ],
)
def test_the_replay_window_holds_both_ways(now: float, tolerance: float, ok: bool):
    assert orderly.verify_signature(SECRET, HEADER, BODY, now=now, tolerance=tolerance) is ok


def test_the_default_window_is_five_minutes():
    assert orderly.DEFAULT_TOLERANCE == 300
    assert orderly.verify_signature(SECRET, HEADER, BODY, now=T - 300)
    assert not orderly.verify_signature(SECRET, HEADER, BODY, now=T + 301)


# Headers (for BODY at T) a receiver must refuse, by what is wrong with them.
MALFORMED = {
    "none": None,
    "empty": "",
    "spaces": "   ",
    "no fields": "garbage",
    "no v1": f"t={T}",
    "no t": f"v1={V1}",
    "empty t": f"t=,v1={V1}",
    "empty v1": f"t={T},v1=",
    "t not digits": f"t=abc,v1={V1}",
    "t negative": f"t=-{T},v1={V1}",
    "t with a sign": f"t=+{T},v1={V1}",
    "t in exponent form": f"t=1.7672256e9,v1={V1}",
    "t with a fraction": f"t={T}.0,v1={V1}",
    "t with inner space": f"t= {T},v1={V1}",
    "t in non-ASCII digits": "t=" + "".join(chr(0x0660 + int(d)) for d in str(T)) + f",v1={V1}",
    "t far too long": "t=" + "9" * 5000 + f",v1={V1}",
    "t with a leading zero (the MAC covers t as sent)": f"t=0{T},v1={V1}",
    "v1 in upper case": f"t={T},v1={V1.upper()}",
    "v1 cut short": f"t={T},v1={V1[:-2]}",
    "v1 too long": f"t={T},v1={V1}00",
    "v1 not ASCII": f"t={T},v1={V1[:-1]}é",
    "v1 of another body": f"t={T},v1={mac(SECRET.encode(), str(T), b'{}')}",
    "v1 for another t": f"t={T},v1={mac(SECRET.encode(), str(T + 1), BODY)}",
    "semicolons": f"t={T};v1={V1}",
    "names in upper case": f"T={T},V1={V1}",
    "the first v1 counts": f"t={T},v1={'0' * 64},v1={V1}",
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_header_is_refused_without_raising(header: str | None):
    assert not orderly.verify_signature(SECRET, header, BODY, now=T)


# Headers (for BODY at T) that carry the signature among fields this version does not know.
WITH_UNKNOWN_FIELDS = {
    "a v2 after": f"t={T},v1={V1},v2=whatever-comes-next",
    "a v0 before": f"v0=old,t={T},v1={V1}",
    "v1 first": f"v1={V1},t={T}",
    "spaces around fields": f" t={T} , v1={V1} ",
    "a field without value": f"t={T},flag,v1={V1}",
    "an empty field": f"t={T},,v1={V1},",
    "an unknown field with '='": f"t={T},note=a=b,v1={V1}",
}


@pytest.mark.parametrize("header", WITH_UNKNOWN_FIELDS.values(), ids=WITH_UNKNOWN_FIELDS.keys())
def test_unknown_fields_are_ignored(header: str):
    assert orderly.verify_signature(SECRET, header, BODY, now=T)


def docs_snippet() -> Callable[..., bool]:
    """``verify_orderly_signature`` as ``docs/webhooks.md`` gives it to receivers."""
    page = (REPO / "docs" / "webhooks.md").read_text()
    m = re.search(
        r"<!-- orderly-signature-verify:begin -->\s*```python\n(.*?)```\s*"
        r"<!-- orderly-signature-verify:end -->",
        page,
        re.S,
    )
    assert m, "docs/webhooks.md has no orderly-signature-verify snippet"
    scope: dict[str, Any] = {}
    exec(m.group(1), scope)
    fn: Callable[..., bool] = scope["verify_orderly_signature"]
    return fn


def test_verify_signature_agrees_with_the_documented_snippet():
    documented = docs_snippet()
    # The snippet is the short version: it takes bytes and a header, and
    # compares non-ASCII or very long input the way Python does (by raising).
    cases = {
        **{k: v for k, v in MALFORMED.items() if k not in ("none", "v1 not ASCII", "t far too long")},
        **WITH_UNKNOWN_FIELDS,
        "valid": HEADER,
    }
    for name, header in cases.items():
        assert header is not None
        for now in (T, T + 300, T + 301, T - 300, T - 301):
            expected = documented(SECRET.encode(), header, BODY, now=now)
            assert orderly.verify_signature(SECRET, header, BODY, now=now) is expected, (name, now)
    assert documented(SECRET.encode(), HEADER, BODY, now=T)


def test_caller_mistakes_raise_naming_them():
    with pytest.raises(ValueError, match="secret is empty"):
        orderly.verify_signature("", HEADER, BODY, now=T)
    with pytest.raises(ValueError, match="secret is empty"):
        orderly.signature_header(b"", BODY)
    with pytest.raises(TypeError, match="body must be the raw request bytes, not str"):
        orderly.verify_signature(SECRET, HEADER, BODY.decode(), now=T)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="body must be the raw request bytes, not dict"):
        orderly.verify_signature(SECRET, HEADER, json.loads(BODY), now=T)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="secret must be str or bytes, not NoneType"):
        orderly.verify_signature(None, HEADER, BODY, now=T)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance must be 0 seconds or more"):
        orderly.verify_signature(SECRET, HEADER, BODY, now=T, tolerance=-1)
    with pytest.raises(ValueError, match="tolerance must be 0 seconds or more"):
        orderly.verify_signature(SECRET, HEADER, BODY, now=T, tolerance=float("nan"))
    with pytest.raises(ValueError, match="timestamp must be whole Unix seconds"):
        orderly.signature_header(SECRET, BODY, timestamp=-1)


def test_webhook_job_reads_the_request_body():
    job = orderly.webhook_job(BODY)
    assert job == orderly.WebhookJob(
        id="c880cc1b-dc27-4175-b616-29a69322d156",
        queue="requests",
        key=None,
        seq=1,
        attempt=1,
        payload={"uid": "c880cc1b-dc27-4175-b616-29a69322d156"},
    )
    assert job.raw == json.loads(BODY)
    keyed = orderly.webhook_job(
        '{"id": "j", "queue": "q", "key": "customer-42", "seq": 17, "attempt": 3, "payload": [1], "new": 0}'
    )
    assert (keyed.key, keyed.seq, keyed.attempt, keyed.payload) == ("customer-42", 17, 3, [1])
    assert orderly.webhook_job(memoryview(BODY)) == job


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is not JSON"),
        (b"{", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (BODY.replace(b'"seq":1', b'"seq":"1"'), r"webhook job\.seq: expected an integer"),
        (BODY.replace(b'"id":', b'"job_id":'), r"webhook job\.id: expected a string"),
        (BODY.replace(b'"key":null', b'"key":7'), r"webhook job\.key: expected a string"),
        (BODY.replace(b'"attempt":1', b'"attempt":true'), r"webhook job\.attempt: expected an integer"),
    ],
)
def test_webhook_job_names_what_is_wrong(body: bytes, message: str):
    with pytest.raises(orderly.OrderlyError, match=message):
        orderly.webhook_job(body)
