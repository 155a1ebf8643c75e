#!/usr/bin/env bash
# The GPU machine's side of issue #20's check: installs MLX's CUDA build (and mlx-audio, when its
# wheels came along) from the halves earlier calls copied to /tmp, then runs bench/gpu_check.py
# and bench/host_time.py on the GPU, results in $OUT. Run from the project root as the last of the
# device calls listed in bench/README.md ("GPU check"), carrying .gpu/b:
#
#     bash bench/gpu_run.sh [MINUTES]      # gpu_check's time budget, default 4
#
# Sized for one device call of ~420 s (install < 1 min, gpu_check: budget + at most 1 min for the
# row in flight, host_time < 60 s), so that the 15 device minutes (start-up and the calls that bring
# the wheels included) leave room to run it again.
#
# Every step writes what it saw under $OUT, so a failure (MLX's CUDA build not starting, say)
# comes back as a result.
set -uo pipefail
out=${OUT:-/tmp/gpu-check-out}
minutes=${1:-4}
mkdir -p "$out"
log() { echo "[gpu_run] $*" | tee -a "$out/gpu_run.log"; }

log "nvidia-smi: $(nvidia-smi -L 2>&1 | head -4)"
cp .gpu/b/* /tmp/gpuw/ || { log "no /tmp/gpuw: the call carrying .gpu/a must come first"; exit 1; }
(cd /tmp/gpuw && cat cuda.part.* > "$(cat cuda.name)" \
   && python3 -m pip install -q --no-index --no-deps --target /tmp/site ./*.whl) >> "$out/gpu_run.log" 2>&1 \
   || { log "installing the wheels failed (see gpu_run.log)"; exit 1; }
mlx_audio=()
if [ -d /tmp/gpuw-ma ]; then
  # A second target behind nothing of ours: on PYTHONPATH for mlx-audio's processes only.
  if python3 -m pip install -q --no-index --no-deps --target /tmp/site-ma /tmp/gpuw-ma/*.whl \
       >> "$out/gpu_run.log" 2>&1; then
    mlx_audio=(--mlx-audio-python python3 --mlx-audio-path /tmp/site-ma)
  else
    log "installing mlx-audio failed: its rows will be skipped"
  fi
fi
# MLX's CUDA library looks for cuBLAS, cuDNN, NVRTC & co. beside itself (../../nvidia/* from
# /tmp/site/mlx/lib); the image has them as pip packages of its own Python: link them there.
nvidia=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
if [ -n "$nvidia" ] && [ ! -e /tmp/site/nvidia ]; then
  ln -s "$nvidia" /tmp/site/nvidia && log "linked $nvidia as /tmp/site/nvidia"
fi
export PYTHONPATH=/tmp/site:$PWD MLX_ENABLE_TF32=0
log "MLX: $(python3 -c 'import mlx.core as mx; print(mx.__version__, mx.default_device())' 2>&1 | tail -3)"
# No MLX, no check: stop here rather than spend the device's minutes failing every row.
python3 -c 'import mlx.core as mx; assert mx.is_available(mx.gpu)' >> "$out/gpu_run.log" 2>&1 \
  || { log "MLX's CUDA build did not start (the error is above): stopping"; exit 1; }

timeout $((minutes * 60 + 60)) python3 bench/gpu_check.py --device gpu --out "$out" --work /tmp/gpu-work \
  --max-minutes "$minutes" ${mlx_audio[@]+"${mlx_audio[@]}"}
log "gpu_check exit status $?"
# Host time per frame on the GPU: what decides frames/s there (mlx-audio is skipped without its wheels).
timeout 60 python3 bench/host_time.py --device gpu --ours-python python3 --cache-dir /tmp/gpu-work/host \
  --out "$out/host_time.md" ${mlx_audio[@]+"${mlx_audio[@]}"} >> "$out/gpu_run.log" 2>&1
log "host_time exit status $?"
# Its runners' logs stay in the work folder, which does not come back.
cp -r /tmp/gpu-work/host/results/logs-host-* "$out/" 2>/dev/null
ls -l "$out" | tee -a "$out/gpu_run.log"
