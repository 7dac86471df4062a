#!/usr/bin/env bash
# What a lent GPU can tell in one call of at most 8 minutes, install included.
#
#   bench/gpu.sh fetch   # here, before the call: the wheels the GPU machine lacks, into .whl/;
#                        # with WIKITEXT=<local WikiText folder, Hub layout> also a copy of it
#   bench/gpu.sh run     # on the GPU, .whl carried: the Triton kernels' tests, the kernels
#                        # against the official ones, flash attention and cuDNN, and the ~77M
#                        # training step -> $OUT/<date>-<gpu>.md, gpu-run.log, slstm-build.log
#   bench/gpu.sh sweep   # on the GPU, .whl carried: experiment=wt2_gpu, four models, at a budget
#                        # that fits -> $OUT/<date>-<gpu>-wt2_gpu.md (+ .png, -summary.csv) and
#                        # gpu-sweep.log. The data: $WIKITEXT, else the copy in .whl/wikitext
#
# Each stage ends by a fixed second of the run (RUN_PLAN, SWEEP_PLAN), under timeout(1); time a
# stage leaves goes to the next, a failing or timed-out stage never stops the later ones, and the
# tables are written from whatever the stages left.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

# The bound of either command, seconds; every stage ends by a second of it, less the KILL_S
# that timeout(1) may wait before it kills a stage that ignores its signal.
BOUND=480
KILL_S=5
# `run`: stage, and the second of the run by which it ends. The training step keeps 150 s of
# its own, whatever the kernels take.
RUN_PLAN=(install:30 tests:150 kernels:300 train-step:450 report:470)
# `sweep`: the sweep's jobs split what the install leaves (bench/gpu_sweep.py).
SWEEP_PLAN=(install:30 sweep:465)

# Official peers (xlstm and its needs), pytest and its needs for `run`; Hydra, OmegaConf and
# datasets with their needs for `sweep` (W&B is not needed: the sweep logs to csv). One version
# of each, as a second version of a package stops the whole offline install.
WHEELS=(
  xlstm==2.0.6 mlstm-kernels==2.0.6 einops==0.8.2 safetensors==0.8.0 ninja==1.13.2
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 packaging==26.4 pygments==2.21.0
  hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
)
# Needs of the wheels above that the GPU machine's image already holds.
ON_GPU="torch numpy pyyaml matplotlib filelock pyarrow pandas tqdm xxhash fsspec huggingface-hub"

fetch() {
  "$root/../shared/device/fetch-wheels.sh" "${WHEELS[@]}" || return
  if [ -n "${WIKITEXT:-}" ]; then  # the GPU machine reaches no dataset hub: carry a copy
    rm -rf .whl/wikitext && cp -r "$WIKITEXT" .whl/wikitext || return
    du -sh .whl/wikitext
  fi
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

ends_by() {  # ends_by STAGE PLAN...: the second by which STAGE ends
  local stage=$1 entry
  shift
  for entry in "$@"; do [ "${entry%%:*}" = "$stage" ] && echo "${entry#*:}" && return; done
  echo "no stage $stage" >&2
  return 1
}

stage() {  # stage NAME ENDS_BY COMMAND...: run COMMAND until second ENDS_BY; never fail
  local name=$1 limit=$(($2 - SECONDS)) start=$SECONDS rc
  shift 2
  if [ "$limit" -le 0 ]; then
    rc=124
    echo "=== $name: no time left"
  else
    echo "=== $name (limit ${limit} s): $*"
    timeout -k "$KILL_S" "$limit" "$@"
    rc=$?
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo  # after a cut-off line of its output
  fi
  echo "=== $name: exit $rc after $((SECONDS - start)) s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$limit" "$((SECONDS - start))" "$rc" >>"$work/stages.tsv"
}

install_wheels() {  # the carried wheels into /tmp/site, which then comes first on the Python path
  stage install "$(ends_by install "$@")" python3 -m pip install -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  # /tmp/site/bin holds ninja, which compiles the official sLSTM CUDA kernel.
  export PYTHONPATH="/tmp/site:$root/src" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv,noheader 2>/dev/null | head -1)
  echo "GPU: ${gpu:-none found}"
}

run_stages() {
  SECONDS=0
  install_wheels "${RUN_PLAN[@]}"
  # The official sLSTM CUDA kernel takes a minute or more to compile: build it beside the tests
  # (on 8 of the 16 cores), so that the kernels stage finds it built; after that stage it is of
  # no use, so it stops by that stage's end.
  MAX_JOBS=8 stage slstm-prebuild "$(ends_by kernels "${RUN_PLAN[@]}")" \
    python3 bench/gpu_kernels.py --prebuild >"$out/slstm-build.log" 2>&1 &
  local prebuild=$!
  # Only the carried pytest: plugins of the image's own pytest may not suit its version.
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 stage tests "$(ends_by tests "${RUN_PLAN[@]}")" \
    bash -c 'set -o pipefail
      python3 -m pytest -q -p no:cacheprovider tests/test_triton_kernels.py 2>&1 | tee "$0"' \
    "$work/tests.log"
  # The benchmark stops starting rows 25 s before its stage's end (imports come first) and
  # rewrites its tables after every row, so even a hard stop leaves the finished rows.
  local entry name ends
  for entry in kernels:mlstm,slstm train-step:train; do
    name=${entry%%:*}
    ends=$(ends_by "$name" "${RUN_PLAN[@]}")
    MAX_JOBS=16 stage "$name" "$ends" python3 bench/gpu_kernels.py --sections "${entry#*:}" \
      --out "$work/$name" --budget $((ends - SECONDS - 25))
    [ "$name" = kernels ] && wait "$prebuild"  # its row in the result says how it went
  done
  stage report "$(ends_by report "${RUN_PLAN[@]}")" python3 bench/gpu_result.py run \
    --work "$work" --out "$out" --gpu "$gpu" --seconds "$SECONDS" --bound "$BOUND"
  echo "=== done in ${SECONDS} s (bound ${BOUND} s)"
}

sweep_stages() {
  SECONDS=0
  install_wheels "${SWEEP_PLAN[@]}"
  local data=${WIKITEXT:-.whl/wikitext} ends
  ends=$(ends_by sweep "${SWEEP_PLAN[@]}")
  # bench/gpu_sweep.py ends its own sweep in time for its tables; the stage's limit is only a
  # backstop.
  stage sweep "$ends" python3 bench/gpu_sweep.py --data "$data" --out "$out" \
    --gpu "${gpu%%,*}" --seconds $((ends - SECONDS - KILL_S))
  echo "=== done in ${SECONDS} s (bound ${BOUND} s)"
}

out=${OUT:-/tmp/xlstm-gpu-bench}
case ${1:-} in
  fetch) fetch ;;
  run | sweep)
    mkdir -p "$out"
    work=$(mktemp -d)  # the stages' own files: $OUT brings back only a few
    "${1}_stages" 2>&1 | tee "$out/gpu-$1.log"
    ;;
  *)
    echo "usage: bench/gpu.sh fetch|run|sweep" >&2
    exit 2
    ;;
esac
