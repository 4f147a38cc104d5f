"""The README's "Enqueue in your own transaction" Python example, run as
written against a real PostgreSQL server (``ORDERLY_TEST_DATABASE_URL``,
default the CI one) and a real ``orderly serve --database-url`` on it.

Only two things in the snippet are changed: the connection string (so the
application's ``orders`` table lands in this test's own schema) and the
function's schema (``orderly.`` becomes this test's schema). A database that
cannot be reached fails the test; it does not skip.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import orderly
from support import REPO, Server

DATABASE_URL = os.environ.get("ORDERLY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
README_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def readme_snippet() -> str:
    """The Python block under "With Python and psycopg:" in the README."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Enqueue in your own transaction", 1)[1]
    m = re.search(r"With Python and psycopg:\s*```python\n(.*?)```", section, re.S)
    assert m, "the README has no psycopg example under 'Enqueue in your own transaction'"
    return m.group(1)


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own, dropped at the end."""
    name = f"py_readme_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def run_snippet(schema: str, *, fail_after: bool = False) -> dict[str, Any]:
    """Runs the README's snippet (optionally raising inside its transaction,
    after the enqueue) and returns its variables."""
    code = readme_snippet()
    assert README_DSN in code, code
    assert "orderly.enqueue(" in code, code
    dsn = f"{DATABASE_URL}?options=-csearch_path%3D{schema}"
    code = code.replace(f'"{README_DSN}"', repr(dsn)).replace("orderly.enqueue(", f"{schema}.enqueue(")
    if fail_after:
        code = code.replace(
            "        ).fetchone()[0]\n",
            "        ).fetchone()[0]\n        raise RuntimeError('the application gives up')\n",
        )
        assert "the application gives up" in code, code
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md (psycopg example)", "exec"), scope)
    return scope


def listed(client: orderly.Client) -> list[orderly.Job]:
    """Every job of the example's queue (none when the queue was never used)."""
    try:
        return list(client.jobs("emails"))
    except (orderly.QueueNotFoundError, orderly.NotFoundError):
        return []


def test_the_readme_psycopg_example_enqueues_in_the_applications_transaction(
    start_server: Callable[..., Server], schema: str
) -> None:
    server = start_server("--database-url", DATABASE_URL, "--database-schema", schema)
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, total bigint NOT NULL)")

    with orderly.Client(server.url) as client:
        # A transaction that fails after the enqueue leaves neither the order nor the job.
        with pytest.raises(RuntimeError, match="the application gives up"):
            run_snippet(schema, fail_after=True)
        assert listed(client) == []

        # The example as written: both exist once it commits, and a claim
        # long-polling on the server is woken by the commit.
        scope = run_snippet(schema)
        job_id = scope["job_id"]
        assert isinstance(job_id, str), scope
        assert job_id, scope
        with psycopg.connect(DATABASE_URL) as conn:
            row = conn.execute(f"SELECT total FROM {schema}.orders WHERE id = 42").fetchone()
        assert row == (1999,)

        started = time.monotonic()
        leases = client.claim("emails", "py-readme", wait=10)
        assert [lease.job.id for lease in leases] == [job_id], server.log()
        job = leases[0].job
        assert job.key == "customer-42"
        assert job.payload == {"order": 42}
        assert job.seq >= 1
        print(f"claim woken {time.monotonic() - started:.3f} s after the commit")
        client.complete(leases[0])
        assert client.job(job_id).state == orderly.JobState.SUCCEEDED
