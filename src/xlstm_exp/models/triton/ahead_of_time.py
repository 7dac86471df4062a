"""Compile the project's Triton kernels for GPUs that are not here, and check they fit.

``triton.compile`` with a ``GPUTarget`` emits PTX without a GPU or a driver, and Triton's bundled
ptxas assembles it; its verbose report gives registers and spills, Triton's metadata the shared
memory per block. Every configuration the wrappers launch (``slstm_launches``,
``mlstm_launches``) is compiled for an A100 (sm_80) and an H100/H200 (sm_90) and held to their
limits. Jobs are compiled without Triton's launch-time specialisation (16-byte aligned pointers,
integers divisible by 16), i.e. as launched for head dims that are not multiples of 16; for
multiples Triton compiles a specialised variant, which in samples spilled less. Each compile
runs in a worker process started with Triton's interpreter off: tests switch it on, and it
replaces the kernels by Python functions that cannot be compiled.

    python -m xlstm_exp.models.triton.ahead_of_time [--markdown PATH]
"""

import argparse
import contextlib
import dataclasses
import importlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import torch

# Largest spill (bytes stored per thread) a launched configuration may have. Spills go to local
# memory, which L1 caches. The bound admits a spilled accumulator fragment around an inner loop
# and refuses spilled tiles, which cost kilobytes per thread (each configuration's spill:
# bench/results/2026-11-29-kernel-resources.md). Their cost on a GPU is not measured yet.
MAX_SPILL_BYTES = 512


@dataclass(frozen=True)
class Target:
    name: str
    arch: int  # compute capability, e.g. 90 for sm_90
    max_shared: (
        int  # bytes of shared memory one block may use (cudaDevAttrMaxSharedMemoryPerBlockOptin)
    )


TARGETS = (Target("A100", 80, 166_912), Target("H100/H200", 90, 232_448))


@dataclass(frozen=True)
class Job:
    """A launch as plain data, so that a worker process can rebuild and compile it."""

    config: str
    module: str
    kernel: str
    constexprs: tuple[tuple[str, object], ...]
    num_warps: int
    num_stages: int
    pointers: tuple[tuple[str, str], ...]  # argument -> torch dtype name
    floats: tuple[str, ...]
    target: Target


@dataclass(frozen=True)
class Resources:
    job: Job
    registers: int
    spill_stores: int
    shared: int
    error: str | None = None

    def problems(self, max_spill: int = MAX_SPILL_BYTES) -> list[str]:
        where = f"{self.job.kernel} [{self.job.config}] on {self.job.target.name}"
        if self.error is not None:
            return [f"{where}: does not compile: {self.error}"]
        found = []
        if self.shared > self.job.target.max_shared:
            found.append(
                f"{where}: {self.shared:,} B of shared memory, over the "
                f"{self.job.target.max_shared:,} B a block may use"
            )
        if self.spill_stores > max_spill:
            found.append(f"{where}: spills {self.spill_stores} B per thread, over {max_spill} B")
        return found


def job(config: str, launch, target: Target) -> Job:
    """`launch` (a ``Launch``) for `target` as a Job."""
    fn = launch.kernel.fn
    return Job(
        config=config,
        module=fn.__module__,
        kernel=fn.__name__,
        constexprs=tuple(launch.constexprs.items()),
        num_warps=launch.num_warps,
        num_stages=launch.num_stages,
        pointers=tuple((k, str(v).removeprefix("torch.")) for k, v in launch.pointers.items()),
        floats=tuple(sorted(launch.floats)),
        target=target,
    )


DTYPES = {"fp32 tf32": (torch.float32, True), "fp32": (torch.float32, False)}
DTYPES["bf16"] = (torch.bfloat16, True)
SLSTM_HEAD_DIMS = (16, 32, 64, 128, 256)
MLSTM_HEAD_DIMS = (64, 128, 256)


def project_jobs(targets: Sequence[Target] = TARGETS) -> list[Job]:
    """Every kernel configuration the models launch, for every target; head dims that launch
    the same compiled kernel share one job."""
    from xlstm_exp.models.triton import MLSTM_CHUNK_SIZES
    from xlstm_exp.models.triton.mlstm_chunkwise import mlstm_launches
    from xlstm_exp.models.triton.slstm_recurrence import slstm_launches

    head_dims: dict[Job, set[int]] = {}  # job without its label -> the head dims it serves
    labels: dict[Job, str] = {}
    for target in targets:
        for mode, (dtype, tf32) in DTYPES.items():
            launches = [
                (head_dim, launch)
                for head_dim in SLSTM_HEAD_DIMS
                for launch in slstm_launches(head_dim, dtype, tf32=tf32)
            ]
            launches += [
                (head_dim, launch)
                for chunk in MLSTM_CHUNK_SIZES
                for head_dim in MLSTM_HEAD_DIMS
                for launch in mlstm_launches(head_dim, head_dim, chunk, dtype, tf32=tf32)
            ]
            for head_dim, launch in launches:
                key = job("", launch, target)
                head_dims.setdefault(key, set()).add(head_dim)
                # The chunk a launch runs (some modes cap the configured one).
                chunk = launch.constexprs.get("L")
                labels[key] = mode if chunk is None else f"L {chunk}, {mode}"
    return [
        dataclasses.replace(key, config=f"DH {'/'.join(map(str, sorted(dims)))}, {labels[key]}")
        for key, dims in head_dims.items()
    ]


@contextlib.contextmanager
def _interpreter_off() -> Iterator[None]:
    """Processes started inside see TRITON_INTERPRET=0 from their first import on."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before


def compile_job(job: Job) -> Resources:
    """Compile `job` (in a process where Triton's interpreter is off) and read its resources."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from xlstm_exp.models.triton import kernel_failure
    from xlstm_exp.models.triton.launch import Launch

    kernel = getattr(importlib.import_module(job.module), job.kernel)
    pointers = {k: getattr(torch, v) for k, v in job.pointers}
    launch = Launch(
        kernel, dict(job.constexprs), job.num_warps, pointers, frozenset(job.floats), job.num_stages
    )
    options = {"num_warps": job.num_warps, "num_stages": job.num_stages}
    source = ASTSource(kernel, launch.signature(), dict(job.constexprs))
    knobs.nvidia.dump_ptxas_log = True  # ptxas -v's report, printed
    knobs.compilation.always_compile = True  # a cached kernel would skip ptxas and its report
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                source,
                target=GPUTarget("cuda", job.target.arch, 32),
                options=options,
            )
    except Exception as error:  # noqa: BLE001 - any failure to compile is the finding
        first = str(error).strip().splitlines() or [""]
        reason = kernel_failure(error) or f"{type(error).__name__}: {first[0]}"
        return Resources(job, 0, 0, 0, reason)
    report = log.getvalue()
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores", report)
    return Resources(
        job,
        registers=int(registers.group(1)) if registers else 0,
        spill_stores=int(spills.group(1)) if spills else 0,
        shared=compiled.metadata.shared,
    )


def compile_all(jobs: Sequence[Job], workers: int | None = None) -> list[Resources]:
    """Compile `jobs` in parallel worker processes, in order."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        with _interpreter_off():  # map submits every job, which starts every worker
            results = pool.map(compile_job, jobs, chunksize=4)
        return list(results)


def toolchain() -> str:
    """Triton's version and its bundled ptxas's, which decide registers and spills."""
    import triton
    from triton import knobs

    ptxas = subprocess.run(
        [knobs.nvidia.ptxas.path, "--version"], capture_output=True, text=True, check=True
    )
    release = re.search(r"release ([\d.]+)", ptxas.stdout)
    return f"Triton {triton.__version__}, ptxas {release.group(1) if release else '?'}"


def markdown(results: Sequence[Resources]) -> str:
    limits = ", ".join(f"{t.name} {t.max_shared:,} B" for t in TARGETS)
    lines = [
        f"Compiled ahead of time with {toolchain()}, no GPU. Limits: shared memory per block "
        f"{limits}; spill stores at most {MAX_SPILL_BYTES} B per thread.",
        "",
        "| kernel | configuration | target | registers | spill stores (B) | shared memory (B) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [r.job.kernel, r.job.config, f"{r.job.target.name} (sm_{r.job.target.arch})"]
        if r.error:
            cells += ["does not compile", "", ""]
        else:
            cells += [str(r.registers), str(r.spill_stores), f"{r.shared:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--workers", type=int, default=None, help="compile processes (all cores)")
    args = parser.parse_args(argv)
    results = compile_all(project_jobs(), args.workers)
    table = markdown(results)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    problems = [p for r in results for p in r.problems()]
    print("\n".join(problems) or f"{len(results)} kernel configurations compile and fit")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
