"""The precision rule (one resolver for every command, vjepa.precision), the thread defaults, the run context and
the step-time swing warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import vjepa.precision as pr
import vjepa.runtime as rt
from vjepa.errors import InvalidArgument
from vjepa.threads import StepTimeWatch, ThreadSettings, cgroup_cpu_limit, set_thread_env_defaults

CPU = torch.device("cpu")


def _support(native: bool) -> pr.CpuBf16Support:
    return pr.CpuBf16Support(native, "AVX512" if native else "AVX2", ("avx512_bf16",), None, "why")


def test_fp32_is_fp32_everywhere():
    decision = pr.resolve_precision("fp32", CPU)
    assert decision.precision == "fp32" and decision.warning is None


def test_auto_is_bf16_only_on_a_native_cpu_that_measures_it_faster(monkeypatch):
    monkeypatch.setattr(pr, "cpu_bf16_support", lambda: _support(False))
    assert pr.resolve_precision("auto", CPU).precision == "fp32"
    monkeypatch.setattr(pr, "cpu_bf16_support", lambda: _support(True))
    monkeypatch.setattr(pr, "cpu_bf16_speedup", lambda: 1.7)
    decision = pr.resolve_precision("auto", CPU)
    assert decision.precision == "bf16" and "1.7x" in decision.reason
    monkeypatch.setattr(pr, "cpu_bf16_speedup", lambda: 0.3)  # native on paper, emulated in practice
    decision = pr.resolve_precision("auto", CPU)
    assert decision.precision == "fp32" and "0.30x" in decision.reason


def test_explicit_bf16_without_native_bf16_runs_with_a_warning(monkeypatch, capsys):
    monkeypatch.setattr(pr, "cpu_bf16_support", lambda: _support(False))
    decision = pr.resolve_precision("bf16", CPU)
    assert decision.precision == "bf16" and "several times slower" in decision.warning
    rt.log_precision(None, decision)
    out = capsys.readouterr()
    assert "precision bf16" in out.out and "WARNING" in out.err
    monkeypatch.setattr(pr, "cpu_bf16_support", lambda: _support(True))
    assert pr.resolve_precision("bf16", CPU).warning is None
    with pytest.raises(InvalidArgument, match="auto, fp32, bf16"):
        pr.resolve_precision("fp16", CPU)


@pytest.mark.parametrize(
    ("name", "capability", "native"), [("NVIDIA H200", (9, 0), True), ("NVIDIA A100", (8, 0), True),
                                       ("Tesla V100", (7, 0), False), ("Tesla T4", (7, 5), False)]
)  # fmt: skip
def test_cuda_bf16_follows_the_compute_capability(monkeypatch, name, capability, native):
    # CI has no GPU: the CUDA branch of the rule runs on the device facts it reads, faked here
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(pr, "cpu_bf16_speedup", lambda: pytest.fail("the CPU probe ran for a CUDA device"))
    cuda = torch.device("cuda", 0)
    auto = pr.resolve_precision("auto", cuda)
    assert auto.precision == ("bf16" if native else "fp32")
    assert name in auto.reason and f"{capability[0]}.{capability[1]}" in auto.reason
    explicit = pr.resolve_precision("bf16", cuda)
    assert explicit.precision == "bf16" and (explicit.warning is None) == native


def test_forced_avx2_kernels_are_not_native_bf16():
    """What torch really uses decides, not /proc/cpuinfo: with AVX2 kernels bf16 is emulated."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = (
        "import json, torch; import vjepa.precision as pr; s = pr.cpu_bf16_support(); "
        "print(json.dumps([s.native, s.torch_kernels, pr.resolve_precision('auto', torch.device('cpu')).precision]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    native, kernels, auto = json.loads(out.stdout)
    assert not native and kernels in ("AVX2", "DEFAULT", "NO AVX") and auto == "fp32"


def test_onednn_isa_limit_below_bf16_is_not_native(monkeypatch):
    pr.cpu_bf16_support.cache_clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    try:
        support = pr.cpu_bf16_support()
        assert not support.native and support.onednn_isa_limit == "AVX512_CORE"
    finally:
        pr.cpu_bf16_support.cache_clear()


def test_importing_vjepa_and_its_cli_does_not_import_torch():
    code = "import sys, vjepa, vjepa.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("user", [None, "ACTIVE"])
def test_the_cli_sets_a_passive_wait_policy_before_torch_loads_unless_the_user_chose(user):
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    }
    if user:
        env["OMP_WAIT_POLICY"] = user
    code = (
        "import os, sys\n"
        "import vjepa.cli\n"
        "try:\n    vjepa.cli.main(['models'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' in sys.modules\n"
        "print('POLICY', os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert f"POLICY {user or 'PASSIVE'}" in out.stdout


def test_thread_env_defaults_respect_the_user_and_a_loaded_torch():
    assert "torch" in sys.modules
    assert set_thread_env_defaults({}) == {}  # too late in this process: torch has read its settings
    code = "from vjepa.threads import set_thread_env_defaults as s; print(s({}), s({'GOMP_SPINCOUNT': '0'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{'OMP_WAIT_POLICY': 'PASSIVE'} {}"


def test_configure_threads_precedence(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert rt.configure_threads(1).intra_op == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert rt.configure_threads(None).source == "OMP_NUM_THREADS"
        monkeypatch.delenv("OMP_NUM_THREADS")
        settings = rt.configure_threads(None)
        assert settings.source == "default" and 1 <= settings.intra_op <= settings.usable_cpus
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")  # torchrun: the cores are shared by the local processes
        assert rt.configure_threads(None).intra_op == 1
        with pytest.raises(InvalidArgument, match="threads"):
            rt.configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_cgroup_quota_is_read(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None


def test_step_time_swings_warn_once_and_point_at_oversubscription():
    threads = ThreadSettings(2, "default", 2, "spin, then sleep (OpenMP default)", "OpenMP default")
    watch = StepTimeWatch(threads, every=50)
    warm_up = [5.0, 4.0, 3.0]  # the first steps allocate: ignored
    steady = [0.5, 0.6, 0.55, 0.6, 0.5, 0.65, 0.58] * 3
    assert all(watch.observe(t) is None for t in warm_up + steady)
    warnings = [watch.observe(t) for t in (1.8, 2.2, 0.6, 2.0, 1.9)]
    assert sum(w is not None for w in warnings) == 1
    text = next(w for w in warnings if w)
    assert "oversubscription" in text and "OMP_WAIT_POLICY=PASSIVE" in text and "runtime.threads=1" in text


def test_the_run_context_shares_every_position_once_and_resolves_precision_once(monkeypatch):
    for count, world in ((10, 3), (7, 2), (2, 4), (12, 4)):
        shares = [rt.Runtime(CPU, rank=r, world_size=world).share(count) for r in range(world)]
        assert sorted(p for s in shares for p in s) == list(range(count))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert list(rt.share(12, 1, 4, skip=2)) == [9]  # a resumed pass skips this rank's first two
    by_hand = rt.Runtime(CPU)
    assert by_hand.precision == "fp32" and by_hand.decision is None
    resolved = by_hand.resolved("fp32")
    assert resolved.decision is not None and resolved.decision.requested == "fp32"
    monkeypatch.setattr(rt, "resolve_precision", lambda *a: pytest.fail("resolved twice"))
    assert resolved.resolved("bf16") is resolved  # setup's (or the first) decision stands
    with resolved.autocast():
        assert not torch.is_autocast_enabled("cpu")
    resolved.barrier()  # single process: nothing to wait for
    assert list(resolved.track(range(3), 3, "x")) == [0, 1, 2]
