"""Sharding a plan's devices and merging the shards' runs: pure logic and real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_jobs_and_records import record

from harness.config import parse_shard, shard_devices
from harness.errors import ConfigError, StoreError
from harness.store import RunStore, merge_runs


def test_shards_split_the_devices_deterministically() -> None:
    names = ["pi5-b", "orin", "pi5-a", "pixel", "x86"]
    shards = [shard_devices(names, i, 3) for i in (1, 2, 3)]
    assert sorted(n for shard in shards for n in shard) == sorted(names)  # each exactly once
    assert shards == [["orin", "pixel"], ["pi5-a", "x86"], ["pi5-b"]]
    assert shard_devices(list(reversed(names)), 2, 3) == shards[1]  # order of the plan: no matter
    with pytest.raises(ConfigError, match=r"--shard.*shard 2/2 has no device.*at most 1 shard"):
        shard_devices(["only"], 2, 2)  # a controller that would run nothing must not pass
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "-1/2"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def shard_run(root: Path, shard: str, *records: object) -> RunStore:
    store = RunStore.create(root, "nightly")
    store.begin(
        {"plan": {"name": "nightly"}, "shard": shard, "jobs": [r.job_id for r in records],
         "devices": {r.device: {} for r in records}, "finished_at": "2026-11-23T07:00:00Z"}
    )  # fmt: skip
    for item in records:
        store.write_job(item)
    return store


def test_merge_combines_shards_and_refuses_two_results_of_one_job(tmp_path: Path) -> None:
    one = shard_run(tmp_path, "1/2", record(job="pi.m.fp32.cpu.t1"))
    skipped = record("skipped", job="orin.m.fp32.cpu.t1", device="orin", error="unreachable")
    two = shard_run(tmp_path, "2/2", record(job="orin.m.fp32.cpu.t1", device="orin"))
    three = shard_run(tmp_path, "2/2", skipped)
    merged = merge_runs([one, three, two], tmp_path)
    records = merged.records()
    assert sorted(r.job_id for r in records) == ["orin.m.fp32.cpu.t1", "pi.m.fp32.cpu.t1"]
    assert {r.status for r in records} == {"ok"}  # the result wins over the skipped record
    assert {r.run_id for r in records} == {merged.run_id}
    meta = json.loads((merged.run_dir / "run.json").read_text())
    assert meta["merged_from"] == {one.run_id: "1/2", three.run_id: "2/2", two.run_id: "2/2"}
    assert meta["finished_at"] and (merged.run_dir / "results.parquet").is_file()
    again = shard_run(tmp_path, "1/2", record(job="pi.m.fp32.cpu.t1"))
    with pytest.raises(StoreError, match="has a result in both"):
        merge_runs([one, again], tmp_path)
    other = RunStore.create(tmp_path, "weekly")
    other.begin({"plan": {"name": "weekly"}})
    with pytest.raises(StoreError, match="different plans"):
        merge_runs([one, other], tmp_path)


def test_a_skipped_job_is_replaced_by_its_result_on_resume(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path, "nightly")
    store.write_job(record("skipped", error="device 'pi': reserved by someone"))
    assert store.finished_job_ids() == set()  # --resume runs it
    store.write_job(record())
    assert store.finished_job_ids() == {"pi.m.fp32.cpu.t1"}
    assert [r.status for r in store.records()] == ["ok"]
    kept = list((store.jobs_dir / "superseded").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "skipped"
    with pytest.raises(StoreError, match="never overwritten"):
        store.write_job(record())
