"""`bench/codec_speed.py` on the tiny codec: every formulation and op gets a row of measured times
(it once imported a process-wide switch that no longer existed and nothing noticed)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_codec_speed_times_every_formulation_and_op():
    proc = subprocess.run(
        [sys.executable, "bench/codec_speed.py", "--size", "tiny-0.6b", "--impls", "native,matmul",
         "--ops", "decode,encode,stream", "--frames", "6", "--step", "2", "--repeat", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "SnakeBeta: numpy" in proc.stdout and "BLAS: " in proc.stdout
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in proc.stdout.splitlines()
            if line.startswith("| native") or line.startswith("| matmul")]
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (impl, op) for impl in ("native", "matmul") for op in ("decode", "encode", "stream2"))
    for impl, op, audio_s, low, median, *_ in rows:
        assert float(audio_s) == 0.48 and 0 < float(low) <= float(median), (impl, op)
