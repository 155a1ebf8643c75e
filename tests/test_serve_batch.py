"""`bench/serve_batch.py` on a tiny checkpoint, ours only: the server really streams to concurrent
clients, and the report's cells hold what was measured (frames counted, rates, times).

The assertions read the markdown it writes and the JSON beside it, not only its exit status.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FRAMES = 6


def table(markdown: str, head: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header line starts with `head`, as {header: cell}."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    names = [c.strip() for c in lines[start].strip("|").split("|")]
    return [dict(zip(names, (c.strip() for c in row.strip("|").split("|")))) for row in rows]


def median(cell: str) -> float:
    """`0.05 (0.04–0.06)` -> 0.05."""
    return float(cell.split()[0])


def test_serve_batch_measures_ours(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "bench/serve_batch.py", "--size", "tiny-0.6b", "--frames", str(FRAMES),
         "--clients", "1,2", "--systems", "ours", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    markdown = (out / "serve_batch.md").read_text()
    record = json.loads((out / "serve_batch.json").read_text())
    assert markdown.strip() in proc.stdout and record["complete"]

    rows = table(markdown, "| system | clients |")
    assert [(r["system"], r["clients"]) for r in rows] == [("ours", "1"), ("ours", "2")]
    for r in rows:
        clients = int(r["clients"])
        assert float(r["frames delivered"]) == clients * FRAMES, r  # every request made exactly F frames
        assert float(r["delivered frames/s"]) > 0 and float(r["frame loop frames/s"]) > 0, r
        # The cell is frames over wall time (the JSON's unrounded numbers: "wall s" shows 2 decimals).
        served = next(x for x in record["servers"]["ours"] if x["clients"] == clients)
        assert served["frames"] == clients * FRAMES
        rate = served["frames"] / served["wall_s"]
        assert float(r["delivered frames/s"]) == pytest.approx(rate, abs=0.006), r
        assert 0 < median(r["time to first audio s"]) <= median(r["request s"]), r
    assert rows[0]["× 1 client"] == "1.00"

    # Per client, in the JSON: all 200, all F frames, first audio before the end.
    served = record["servers"]["ours"]
    assert [len(r["per_client"]) for r in served] == [1, 2]
    for r in served:
        for c in r["per_client"]:
            assert c["status"] == 200 and c["error"] is None and c["frames"] == FRAMES, c
            assert 0 < c["ttfa_s"] <= c["total_s"], c
    loops = {r["clients"]: r for r in record["loops"]["loops"]}
    assert {c: r["runs"][0]["frames"] for c, r in loops.items()} == {1: FRAMES - 1, 2: 2 * (FRAMES - 1)}

    # The new requests while 3 others speak (a batch of 4): answered, with first audio.
    new = record["load"]["new"]
    assert new and all(c["status"] == 200 and c["ttfa_s"] > 0 for c in new), record["load"]
    lone = record["loops"]["lone"]
    assert all(lone[k] > 0 for k in ("prompt_s", "prefill_s", "frame_s", "decode_s", "first_chunk_s"))

    targets = table(markdown, "| target |")
    assert len(targets) == 4
    # No 4-client row here: the throughput targets say so rather than guess.
    assert [t["status"] for t in targets[:2]] == ["not measured", "not measured"]
    assert all(t["status"] in ("met", "not met", "not measured") for t in targets[2:])
