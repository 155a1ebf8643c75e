"""mlx-audio 0.6.2's own server (`mlx_audio.server:app`), started for `bench/serve_batch.py`.

Run with the mlx-audio venv's python:

    python bench/runners/mlxaudio_server.py --port 0 [--dtype float32|stored]

The app, its inference broker and its TTS batching are mlx-audio's, untouched; this launcher only
(1) casts the talker to `--dtype` when its model loader runs, as `runners/mlxaudio.py` does for the
benchmark's fp32 rows (its server has no dtype option and serves the bf16 file in bf16 otherwise),
(2) binds 127.0.0.1 itself, a free port with `--port 0`, and prints `PORT <n>` once it listens,
(3) does not make the `logs/` folder `mlx_audio.server.main` makes in the working directory,
(4) on an MLX build without a GPU backend (Linux CPU wheels), hands mlx-audio's inference worker a
CPU stream where it asks for a GPU one: its broker thread starts with `mx.new_stream(mx.gpu)`,
which raises there, and the thread dies before serving anything (every request then hangs).
The batch size comes from `MLX_AUDIO_TTS_MAX_BATCH_SIZE`, read by mlx-audio's TTS adapter.
"""

import argparse
import socket
import sys
from typing import Any


def cast_on_load(server: Any, dtype: str) -> None:
    """Wrap the loader `mlx_audio.server` calls, so every model it loads is cast to `dtype` (none
    for "stored"), and print the talker's dtype once loaded."""
    import mlx.core as mx

    load = server.load_model
    target = None if dtype == "stored" else getattr(mx, dtype)

    def load_cast(name: str) -> Any:
        model = load(name)
        talker = getattr(model, "talker", None)
        if talker is not None and target is not None and talker.model.norm.weight.dtype != target:
            talker.set_dtype(target)  # the code predictor is part of the talker
            mx.eval(talker.parameters())
        if talker is not None:  # for the driver's report
            print(f"TALKER_DTYPE {talker.model.norm.weight.dtype}", file=sys.stderr, flush=True)
        return model

    server.load_model = load_cast


def cpu_streams_without_gpu() -> None:
    """`mx.new_stream(mx.gpu)` gives a CPU stream when MLX has no GPU backend (shim (4) above)."""
    import mlx.core as mx

    if mx.is_available(mx.gpu):
        return
    new_stream = mx.new_stream

    def new_stream_here(device: Any) -> Any:
        return new_stream(device if device == mx.cpu else mx.cpu)

    mx.new_stream = new_stream_here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "stored"])
    args = parser.parse_args()

    import uvicorn
    from mlx_audio import server

    cpu_streams_without_gpu()
    cast_on_load(server, args.dtype)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print(f"PORT {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(server.app, log_level="warning", loop="asyncio")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
