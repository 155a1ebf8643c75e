"""`bench/gpu_check.py --device cpu --quick`: the GPU check runs here too, and its tables say so.

The same script is what a lent GPU runs (bench/gpu_run.sh); on the CPU it uses tiny checkpoints.
The assertions read the markdown it prints, the values in its cells, not only its exit status.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("generate_*.npz"))


def section(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the table under `### <title>...`, as {header: cell}."""
    lines = markdown.split(f"### {title}", 1)[1].split("\n### ", 1)[0].strip().splitlines()[1:]
    table = [line for line in lines if line.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]


def run_quick_check(tmp_path: Path) -> str:
    """The check as CI runs it (~15-30 s here); its markdown report, also printed."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    markdown = (out / "gpu_check.md").read_text()
    assert markdown.strip() in proc.stdout
    return markdown


def test_gpu_check_runs_on_the_cpu(tmp_path):
    report = run_quick_check(tmp_path)
    assert "device cpu (--quick: tiny checkpoints)" in report and "MLX_ENABLE_TF32=0" in report

    # a. every committed fixture, the official codes
    parity = section(report, "a. Parity")
    assert sorted(r["fixture"] for r in parity) == sorted(p.stem.removeprefix("generate_") for p in FIXTURES)
    for r in parity:
        assert r["codes equal"] == "yes" and r["first differing frame"] == "–", r
        assert float(r["prompt max abs diff"]) < 1e-5, r
        # The EOS fixtures hold codes only; every other one its official audio.
        assert r["finish"] == "eos" if r["fixture"].startswith("eos_") else float(r["audio SNR dB"]) >= 90, r

    # b. bf16 against float32, measured
    (agreement,) = section(report, "b. bf16 against float32")
    assert agreement["size"] == "tiny-0.6b"
    assert 0 <= int(agreement["frames until the first differing code"]) <= int(agreement["frames"])
    assert 0.99 < float(agreement["prefill logit cosine"]) <= 1.0

    # c. ours timed in both precisions; mlx-audio skipped, as no python for it was given
    timing = {(r["precision"], r["system"]): r for r in section(report, "c. Speed")}
    assert set(timing) == {(p, s) for p in ("bf16", "q8-bf16") for s in ("ours", "mlx-audio")}
    for precision in ("bf16", "q8-bf16"):
        for column in ("frames/s", "loop frames/s (prefill excl.)", "TTFA s", "peak MLX GB"):
            assert float(timing[precision, "ours"][column]) > 0, (precision, column)
        assert timing[precision, "mlx-audio"]["load s"].startswith("skipped")

    # d. one streamed request through the server, on the device asked for
    (server,) = section(report, "d. One streamed request")
    assert server["device"] == "cpu" and server["HTTP"] == "200"
    assert 0 < float(server["first audio byte s"]) <= float(server["total s"])
    assert float(server["audio s"]) > 0 and float(server["peak level"]) > 0
