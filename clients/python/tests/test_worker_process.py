"""``python -m orderly worker`` as a real child process: killed with -9 in
the middle of a job (the job runs again in its place as attempt 2), a
cancel reaching the running handler, SIGTERM with and without time to
finish, and the command line's own errors."""

from __future__ import annotations

import signal
from pathlib import Path

import orderly
from support import Server, wait_until


def _marker(tmp_path: Path, job_id: str, attempt: int, suffix: str = "") -> Path:
    return tmp_path / f"{job_id}.{attempt}{suffix}"


def test_worker_killed_mid_job_the_job_reruns_in_place_as_attempt_2(
    server: Server, client: orderly.Client, spawn_worker, tmp_path: Path
):
    client.configure("q", lease=1)  # a dead worker's lease runs out in a second
    first = client.enqueue("q", {"hang": True}, id="a")
    client.enqueue_many("q", [orderly.NewJob({}, id="b"), orderly.NewJob({}, id="c")])
    doomed = spawn_worker(server, "handlers:hang_first_attempt", "--queue", "q", MARKER_DIR=str(tmp_path))
    wait_until(
        lambda: _marker(tmp_path, "a", 1).exists(), 30, "job a started in the first worker", doomed.log
    )
    running = client.job("a")
    assert running.state == orderly.JobState.RUNNING
    assert running.attempt == 1
    assert [client.job(i).state for i in "bc"] == [orderly.JobState.QUEUED] * 2

    doomed.kill()  # SIGKILL: no report, no goodbye
    survivor = spawn_worker(
        server,
        "handlers:hang_first_attempt",
        "--queue",
        "q",
        "--max-jobs",
        "3",
        MARKER_DIR=str(tmp_path),
    )
    assert survivor.wait_exit(60) == 0, survivor.log()
    assert survivor.started() == ["a", "b", "c"], survivor.log()

    a, b, c = (client.job(i) for i in "abc")
    assert a.state == orderly.JobState.SUCCEEDED
    assert a.attempt == 2
    assert a.result == {"attempt": 2}
    assert a.seq == first.seq  # the same job, in its own place
    assert a.worker != running.worker
    assert (b.attempt, c.attempt) == (1, 1)
    assert a.start_no < b.start_no < c.start_no  # type: ignore[operator]


def test_cancel_reaches_the_running_handler(
    server: Server, client: orderly.Client, spawn_worker, tmp_path: Path
):
    client.configure(
        "q", lease=3
    )  # heartbeats every second carry the cancel (a tighter lease can expire on a loaded machine)
    client.enqueue_many("q", [orderly.NewJob(1, id="doomed"), orderly.NewJob(2, id="next")])
    worker = spawn_worker(
        server, "handlers:until_cancelled", "--queue", "q", "--max-jobs", "1", MARKER_DIR=str(tmp_path)
    )
    wait_until(lambda: _marker(tmp_path, "doomed", 1).exists(), 30, "the handler runs", worker.log)
    asked = client.cancel("doomed")
    assert asked.state == orderly.JobState.RUNNING
    assert asked.cancel_requested
    assert worker.wait_exit(30) == 0, worker.log()
    assert _marker(tmp_path, "doomed", 1, ".seen").read_text() == "True requested"
    job = client.job("doomed")
    assert job.state == orderly.JobState.CANCELLED
    assert job.error["type"] == "JobCancelled"
    assert client.job("next").state == orderly.JobState.QUEUED


def test_cancel_reaches_an_async_handler_in_a_worker_object(
    server: Server, client: orderly.Client, spawn_worker, tmp_path: Path
):
    client.configure("async-cancel", lease=3)
    client.enqueue("async-cancel", None, id="x")
    worker = spawn_worker(
        server, "handlers:worker", "--max-jobs", "1", "--cancel-grace", "100ms", MARKER_DIR=str(tmp_path)
    )
    wait_until(lambda: _marker(tmp_path, "x", 1).exists(), 30, "the handler runs", worker.log)
    client.cancel("x")
    assert worker.wait_exit(30) == 0, worker.log()
    assert _marker(tmp_path, "x", 1, ".seen").read_text() == "CancelledError requested"
    assert client.job("x").state == orderly.JobState.CANCELLED


def test_sigterm_lets_the_running_job_finish(
    server: Server, client: orderly.Client, spawn_worker, tmp_path: Path
):
    client.enqueue_many("q", [orderly.NewJob(1, id="now"), orderly.NewJob(2, id="later")])
    worker = spawn_worker(
        server, "handlers:steady", "--queue", "q", JOB_SECONDS="0.5", MARKER_DIR=str(tmp_path)
    )
    wait_until(lambda: _marker(tmp_path, "now", 1).exists(), 30, "the job runs", worker.log)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()
    assert client.job("now").state == orderly.JobState.SUCCEEDED
    assert client.job("later").state == orderly.JobState.QUEUED
    assert worker.started() == ["now"]


def test_sigterm_past_the_grace_gives_the_job_up(
    server: Server, client: orderly.Client, spawn_worker, tmp_path: Path
):
    client.enqueue("q", 1, id="long")
    worker = spawn_worker(
        server,
        "handlers:steady",
        "--queue",
        "q",
        "--shutdown-grace",
        "300ms",
        "--cancel-grace",
        "100ms",
        JOB_SECONDS="60",
        MARKER_DIR=str(tmp_path),
    )
    wait_until(lambda: _marker(tmp_path, "long", 1).exists(), 30, "the job runs", worker.log)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 1, worker.log()  # non-zero: it gave a job up
    assert "giving up the running jobs" in worker.log()
    job = client.job("long")
    assert job.state == orderly.JobState.RUNNING  # not reported: it runs again when the lease ends
    assert not _marker(tmp_path, "long", 1, ".done").exists()


def test_command_line_errors(server: Server, spawn_worker, start_server):
    no_colon = spawn_worker(server, "handlers")
    assert no_colon.wait_exit(30) == 2
    assert "module:attribute" in no_colon.log()
    no_queue = spawn_worker(server, "handlers:sleepy")
    assert no_queue.wait_exit(30) == 2
    assert "--queue" in no_queue.log()
    missing = spawn_worker(server, "no_such_module:x", "--queue", "q")
    assert missing.wait_exit(30) == 2
    assert "cannot import module 'no_such_module'" in missing.log()
    bad_duration = spawn_worker(server, "handlers:sleepy", "--queue", "q", "--lease", "30")
    assert bad_duration.wait_exit(30) == 2
    assert "with its unit" in bad_duration.log()
    guarded = start_server("--token", "s3cret")
    refused = spawn_worker(guarded, "handlers:sleepy", "--queue", "q")
    assert refused.wait_exit(30) == 1
    assert "unauthorized" in refused.log()
    allowed = spawn_worker(
        guarded, "handlers:sleepy", "--queue", "q", "--max-jobs", "1", ORDERLY_TOKEN="s3cret"
    )
    with orderly.Client(guarded.url, token="s3cret") as c:
        c.enqueue("q", {"uid": "u"}, id="u")
    assert allowed.wait_exit(30) == 0, allowed.log()
