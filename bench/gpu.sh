#!/usr/bin/env bash
# One-call GPU check of the project's Triton kernels: correctness tests, then the benchmark.
#
#   bench/gpu.sh fetch   # here, before the call: the wheels the GPU machine lacks, into .whl/
#   bench/gpu.sh run     # on the GPU machine, with .whl carried: install them, run
#                        # tests/test_triton_kernels.py, then bench/gpu_kernels.py into $OUT
#
# `run` writes $OUT/gpu-run.log (everything it printed), $OUT/gpu-<date>.md (the tables) and
# $OUT/slstm-build.log (the official sLSTM CUDA kernel's compilation).
# Every stage runs under its own time limit and a failing stage never stops the later ones; the
# whole run stays inside GPU_SH_SECONDS (default 470 s), so it fits a 10-minute call with room.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

# Official peers (xlstm and its needs), pytest and its needs; one version of each, as a second
# version of a package stops the whole offline install.
WHEELS=(
  xlstm==2.0.6 mlstm-kernels==2.0.6 einops==0.8.2 safetensors==0.8.0 ninja==1.13.2
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.21.0
)
# Needs of the wheels above that the GPU machine's image already holds.
ON_GPU="torch numpy pyyaml matplotlib"

fetch() {
  "$root/../shared/device/fetch-wheels.sh" "${WHEELS[@]}" || return
  # Every requirement (markers evaluated for CPython 3.12 on x86-64 Linux, extras left out)
  # must be carried or already on the GPU machine; no distribution may come twice.
  python3 - "$ON_GPU" <<'EOF'
import re
import sys
import zipfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement

env = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix", "extra": "",
}


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


wheels = sorted(Path(".whl").glob("*.whl"))
carried = [norm(w.name.split("-")[0]) for w in wheels]
available = set(carried) | set(sys.argv[1].split())
problems = [f"{name}: more than one wheel" for name in set(carried) if carried.count(name) > 1]
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if (req.marker is None or req.marker.evaluate(env)) and norm(req.name) not in available:
                problems.append(f"{wheel.name} needs {req}")
print("\n".join(problems) or f"requirements complete: {len(wheels)} wheels")
sys.exit(1 if problems else 0)
EOF
}

stage() {  # stage NAME SECONDS COMMAND...: run COMMAND under a time limit, report, never fail
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "=== $name (limit ${limit} s): $*"
  timeout -k 10 "$limit" "$@"
  rc=$?
  [ "$rc" -eq 124 ] && echo "=== $name: TIMED OUT after ${limit} s"
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
}

run_stages() {
  local total=${GPU_SH_SECONDS:-470} left
  failed=()
  stage install 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  # /tmp/site/bin holds ninja, which compiles the official sLSTM CUDA kernel; MAX_JOBS lets
  # it build the kernel's sources in parallel.
  export PYTHONPATH="/tmp/site:$root/src" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1
  export MAX_JOBS=${MAX_JOBS:-16}
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  # The official sLSTM CUDA kernel takes a minute or more to compile: build it beside the
  # tests (on 8 of the 16 cores), so that the benchmark finds it built.
  MAX_JOBS=8 timeout -k 10 300 python3 bench/gpu_kernels.py --prebuild \
    >"$out/slstm-build.log" 2>&1 &
  prebuild=$!
  # Only the carried pytest: plugins of the image's own pytest may not suit its version.
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 stage tests 180 \
    python3 -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py
  left=$((total - SECONDS))
  # The benchmark stops starting cases 30 s before its hard limit and writes its tables after
  # every case, so even a hard stop leaves the finished rows in $OUT.
  stage benchmark "$left" python3 bench/gpu_kernels.py --out "$out" --budget $((left - 30))
  wait "$prebuild" || failed+=("official sLSTM prebuild (exit $?, see slstm-build.log)")
  echo "=== done in ${SECONDS} s; failed stages: ${failed[*]:-none}"
}

case ${1:-} in
  fetch) fetch ;;
  run)
    out=${OUT:-/tmp/xlstm-gpu-bench}
    mkdir -p "$out"
    run_stages 2>&1 | tee "$out/gpu-run.log"
    ;;
  *)
    echo "usage: bench/gpu.sh fetch|run" >&2
    exit 2
    ;;
esac
