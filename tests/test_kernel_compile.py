"""Every Triton kernel configuration the models launch compiles for an A100 (sm_80) and an
H100/H200 (sm_90) and fits their limits: no GPU needed (triton.compile with a GPUTarget, and
Triton's bundled ptxas for registers and spills)."""

import dataclasses
import textwrap

import pytest
import torch

pytest.importorskip("triton")

from xlstm_exp.models.triton import ahead_of_time  # noqa: E402
from xlstm_exp.models.triton.ahead_of_time import TARGETS, compile_all, job  # noqa: E402

A100 = TARGETS[0]


def test_every_launched_kernel_compiles_and_fits_on_a100_and_h100():
    jobs = ahead_of_time.project_jobs()
    results = compile_all(jobs)
    print(ahead_of_time.markdown(results))
    kernels = {r.job.kernel for r in results}
    assert len(kernels) == 7, kernels  # sLSTM forward and backward, five mLSTM kernels
    assert {r.job.target for r in results} == set(TARGETS)
    assert all(r.registers > 0 for r in results if r.error is None)  # ptxas's report was read
    assert [p for r in results for p in r.problems()] == []


def test_a_kernel_over_the_shared_memory_limit_is_reported():
    """The sLSTM forward forced to keep a 256-wide head's R on chip (float32) cannot fit."""
    from xlstm_exp.models.triton.slstm_recurrence import slstm_launches

    forward, _ = slstm_launches(256, torch.float32, tf32=True)
    constexprs = {**forward.constexprs, "RESIDENT": True, "TILE": 256}
    oversized = dataclasses.replace(forward, constexprs=constexprs)
    [result] = compile_all([job("R on chip at DH 256", oversized, A100)])
    assert result.error is None
    shared = [p for p in result.problems() if "shared memory" in p]
    assert shared == [
        f"slstm_forward_kernel [R on chip at DH 256] on A100: {result.shared:,} B of shared "
        "memory, over the 166,912 B a block may use"
    ]


def test_a_kernel_that_does_not_compile_is_reported(tmp_path, monkeypatch):
    (tmp_path / "broken_kernels.py").write_text(
        textwrap.dedent(
            """
            import triton
            import triton.language as tl


            @triton.jit
            def broken_kernel(x_ptr, N: tl.constexpr):
                tl.store(x_ptr + tl.arange(0, N), undefined_value)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # for the compile workers
    import broken_kernels

    from xlstm_exp.models.triton.launch import Launch

    launch = Launch(broken_kernels.broken_kernel, {"N": 16}, 4, {"x_ptr": torch.float32})
    [result] = compile_all([job("N 16", launch, A100)])
    [problem] = result.problems()
    assert problem.startswith("broken_kernel [N 16] on A100: does not compile: ")
    assert "undefined_value" in problem
