import json

import pyarrow.parquet as pq
import pytest

from fakeclue_builder.records import SCHEMA, Row
from fakeclue_builder.store import InvariantError, StageDir, StageRunner, read_rows, shard_rows


def _rows(n):
    return [Row(source="s", source_path=f"/p/{i}", label=i % 2, sample_key=f"{i:04d}") for i in range(n)]


def _drop_odd(rows):
    for row in rows:
        yield row.drop("odd", "odd index") if int(row.source_path.rsplit("/", 1)[1]) % 2 else row


def test_shards_markers_stats_and_dropped(tmp_path):
    summary = StageRunner(tmp_path, "st", "cfg1").run(shard_rows(_rows(25), 10), _drop_odd)
    d = StageDir(tmp_path, "st")
    assert summary.complete and summary.shards_run == 3
    assert [p.name for p in sorted(d.path.glob("part-*.parquet"))] == [f"part-0000{i}.parquet" for i in range(3)]
    assert all(d.read_marker(i) for i in range(3))
    assert pq.read_schema(d.shard_path(0)).equals(SCHEMA)  # explicit schema, never inferred
    stats = json.loads(d.stats_path.read_text())
    assert (stats["in"], stats["kept"], stats["dropped"]) == (25, 13, 12)
    assert stats["in"] == stats["kept"] + stats["dropped"]
    assert stats["dropped_by_reason"] == {"odd": 12}
    dropped = read_rows(d.dropped_path)
    assert len(dropped) == 12 and {r.reason for r in dropped} == {"odd"}
    assert not list(d.path.rglob("*.tmp"))


def test_rerun_skips_done_shards_and_redoes_changed_ones(tmp_path):
    calls = []

    def fn(rows):
        rows = list(rows)
        calls.append(len(rows))
        return iter(rows)

    StageRunner(tmp_path, "st", "cfg").run(shard_rows(_rows(30), 10), fn)
    assert calls == [10, 10, 10]
    calls.clear()
    StageRunner(tmp_path, "st", "cfg").run(shard_rows(_rows(30), 10), fn)
    assert calls == []  # nothing to do
    changed = _rows(30)
    changed[15].label = 9  # content of shard 1 changed
    StageRunner(tmp_path, "st", "cfg").run(shard_rows(changed, 10), fn)
    assert calls == [10]
    calls.clear()
    StageRunner(tmp_path, "st", "cfg2").run(shard_rows(changed, 10), fn)  # config changed: everything redone
    assert calls == [10, 10, 10]
    calls.clear()
    StageRunner(tmp_path, "st", "cfg2", force=True).run(shard_rows(changed, 10), fn)
    assert calls == [10, 10, 10]


def test_fewer_shards_remove_stale_outputs(tmp_path):
    StageRunner(tmp_path, "st", "c").run(shard_rows(_rows(30), 10), iter)
    StageRunner(tmp_path, "st", "c").run(shard_rows(_rows(12), 10), iter)
    d = StageDir(tmp_path, "st")
    assert len(list(d.path.glob("part-*.parquet"))) == 2
    assert sum(1 for _ in d.iter_rows()) == 12


def test_invariant_violation_raises_and_writes_no_marker(tmp_path):
    def loses_rows(rows):
        return iter(list(rows)[1:])

    with pytest.raises(InvariantError, match="in=10"):
        StageRunner(tmp_path, "st", "c").run(shard_rows(_rows(10), 10), loses_rows)
    assert StageDir(tmp_path, "st").read_marker(0) is None


def test_ranks_split_shards_and_the_last_rank_finalizes(tmp_path):
    shards = shard_rows(_rows(40), 10)
    s0 = StageRunner(tmp_path, "st", "c", rank=0, world_size=2).run(shards, iter)
    assert s0.shards_run == 2 and not s0.complete
    d = StageDir(tmp_path, "st")
    assert d.read_marker(0) and d.read_marker(2) and d.read_marker(1) is None
    assert not d.stats_path.exists()
    s1 = StageRunner(tmp_path, "st", "c", rank=1, world_size=2).run(shards, iter)
    assert s1.complete and s1.rows_in == 40 and d.is_complete()
    assert json.loads(d.stats_path.read_text())["kept"] == 40


def test_bad_rank_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="rank"):
        StageRunner(tmp_path, "st", "c", rank=2, world_size=2)


def test_as_inputs_requires_a_finished_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run it first"):
        StageDir(tmp_path, "nope").as_inputs()
