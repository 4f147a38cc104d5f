"""Contract sections 1 and 2, the seed's case, through the Python client and
a real worker child process: three requests posted 1, 2, 3 on a
concurrency-1 queue are waiting, running and finished strictly in that
order at every poll, and the start log says 1, 2, 3."""

from __future__ import annotations

import time
from pathlib import Path

import orderly
from support import SEED_IDS, check_fifo, states


def test_seed_scenario_runs_one_at_a_time_in_enqueue_order(server, client, spawn_worker, tmp_path: Path):
    jobs = [client.enqueue("default", {"uid": uid}, id=uid) for uid in SEED_IDS]
    assert [j.id for j in jobs] == list(SEED_IDS)
    assert [j.state for j in jobs] == [orderly.JobState.QUEUED] * 3
    assert [j.position for j in jobs] == [0, 1, 2]
    assert jobs[0].seq < jobs[1].seq < jobs[2].seq
    assert client.queue("default").concurrency == 1

    worker = spawn_worker(
        server,
        "handlers:sleepy",
        "--queue",
        "default",
        "--max-jobs",
        "3",
        JOB_SECONDS="0.4",
        MARKER_DIR=str(tmp_path),
    )
    deadline = time.monotonic() + 60
    polls, seen_running = 0, set()
    while True:
        polls += 1
        observed = states(client, SEED_IDS)
        check_fifo(observed, polls)
        seen_running.update(i for i, s in enumerate(observed) if s == "running")
        if observed == ["succeeded"] * 3:
            break
        assert time.monotonic() < deadline, f"not all succeeded in 60 s: {observed}\n{worker.log()}"
        time.sleep(0.05)

    assert worker.wait_exit(30) == 0, worker.log()
    assert worker.started() == list(SEED_IDS), worker.log()
    done = [client.job(uid) for uid in SEED_IDS]
    assert [j.result for j in done] == [{"uid": uid} for uid in SEED_IDS]
    assert [j.attempt for j in done] == [1, 1, 1]
    start_nos = [j.start_no for j in done]
    assert start_nos == sorted(start_nos), start_nos
    assert len(set(start_nos)) == 3, start_nos
    finished = [j.finished_at for j in done]
    assert all(f is not None for f in finished)
    assert finished == sorted(finished), finished  # type: ignore[type-var]
    # The polls saw the jobs move (one of them running), not only the end.
    assert seen_running, polls
