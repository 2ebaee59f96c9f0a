"""Selection order: explicit name > BITNET_BACKEND > plugin choice > priority, filtered by device and op."""

from __future__ import annotations

import pytest

from bitnet_sdk.backends import BackendNotFoundError, BackendUnavailableError

from ._support import FakeBackend, ObserverPlugin, SpecPlugin, fake_spec, make_host


def _three() -> SpecPlugin:
    return SpecPlugin(
        fake_spec("low", priority=0, capabilities=("matmul_int", "rms_norm")),
        fake_spec("mid", priority=5, capabilities=("matmul_int",)),
        fake_spec("high", priority=10),
    )


def test_priority_wins_auto_and_ties_break_by_name() -> None:
    host = make_host(_three())
    assert host.get().name == "high"
    tied = make_host(SpecPlugin(fake_spec("zeta", priority=1), fake_spec("alpha", priority=1)))
    assert tied.get("auto").name == "alpha"
    assert [i.name for i in host.available()] == ["high", "mid", "low"]


def test_op_restricts_auto_to_native_capabilities() -> None:
    host = make_host(_three())
    assert host.get(op="matmul_int").name == "mid"
    assert host.get(op="rms_norm").name == "low"
    assert host.get(op="matmul").name == "high"  # required ops are native everywhere
    with pytest.raises(BackendUnavailableError, match=r"no backend can run native 'attention'.*high"):
        host.get(op="attention")


def test_device_restricts_auto() -> None:
    host = make_host(SpecPlugin(fake_spec("cpu1", priority=1), fake_spec("gpu1", devices=("gpu", "cpu"))))
    backend = host.get(device="gpu")
    assert backend.name == "gpu1" and backend.device == "gpu"
    assert host.get(device="cpu").name == "cpu1"
    with pytest.raises(BackendUnavailableError, match="device 'tpu'"):
        host.get(device="tpu")


def test_env_beats_priority_and_explicit_beats_env() -> None:
    observer = ObserverPlugin()
    env = {"BITNET_BACKEND": "low"}
    host = make_host(_three(), observer, env=env)
    assert host.get().name == "low"
    assert host.get("mid").name == "mid"
    env["BITNET_BACKEND"] = "auto"
    assert host.get().name == "high"
    env["BITNET_BACKEND"] = " "
    assert host.get(None).name == "high"
    assert [(n, r) for _, n, r in observer.seen] == [
        ("low", "env"), ("mid", "explicit"), ("high", "priority"), ("high", "priority"),
    ]


def test_unknown_names_list_the_available_backends() -> None:
    host = make_host(_three(), env={"BITNET_BACKEND": "nope"})
    with pytest.raises(BackendNotFoundError, match=r"no backend named 'nope' \(from BITNET_BACKEND\).*high \(cpu\)"):
        host.get()
    with pytest.raises(BackendNotFoundError, match=r"no backend named 'missing';.*low \(cpu\)"):
        host.get("missing")


def test_explicit_name_never_falls_back() -> None:
    host = make_host(SpecPlugin(fake_spec("gpuonly", devices=("gpu",)), fake_spec("cpu1")))
    with pytest.raises(BackendUnavailableError, match=r"'gpuonly' does not run on 'cpu' \(devices: \['gpu'\]\)"):
        host.get("gpuonly")
    with pytest.raises(BackendUnavailableError, match=r"'cpu1' has no native 'matmul_int'"):
        host.get("cpu1", op="matmul_int")


def test_probe_failures_make_a_backend_unavailable() -> None:
    def broken_probe() -> list[str]:
        raise OSError("no driver")

    host = make_host(SpecPlugin(
        fake_spec("broken", priority=9, probe=broken_probe),
        fake_spec("stringy", priority=8, probe=lambda: "cpu"),  # type: ignore[arg-type,return-value]
        fake_spec("nodevice", priority=7, devices=()),
        fake_spec("ok"),
    ))
    infos = {i.name: i for i in host.available()}
    assert "no driver" in (infos["broken"].error or "") and not infos["broken"].available
    assert "list of strings" in (infos["stringy"].error or "")
    assert not infos["nodevice"].available and infos["nodevice"].error is None
    assert host.get().name == "ok"
    with pytest.raises(BackendUnavailableError, match=r"'broken' is unavailable: device probe failed"):
        host.get("broken")
    with pytest.raises(BackendUnavailableError, match="its probe found no device"):
        host.get("nodevice")


def test_factory_failure_falls_back_in_auto_but_not_by_name() -> None:
    calls: list[str] = []

    def exploding(device: str) -> FakeBackend:
        calls.append(device)
        raise RuntimeError("JIT failed")

    host = make_host(SpecPlugin(
        fake_spec("jit", priority=10, factory=exploding, devices=("cpu", "gpu")),
        fake_spec("safe"),
        fake_spec("liar", priority=-1, factory=lambda d: object()),  # type: ignore[arg-type,return-value]
    ))
    assert host.get().name == "safe"
    info = next(i for i in host.available() if i.name == "jit")
    assert info.devices == ("gpu",) and info.available  # cpu withdrawn, gpu untried
    assert "failed to start on cpu: RuntimeError('JIT failed')" in (info.error or "")
    with pytest.raises(BackendUnavailableError, match="'jit' does not run on 'cpu'"):
        host.get("jit")
    assert calls == ["cpu"]  # not retried once it failed on that device
    with pytest.raises(BackendUnavailableError, match="factory returned object, not a Backend"):
        host.get("liar")


def test_every_candidate_failing_is_one_clear_error() -> None:
    def fail(device: str) -> FakeBackend:
        raise RuntimeError(f"cannot start on {device}")

    host = make_host(SpecPlugin(fake_spec("a", factory=fail), fake_spec("b", factory=fail)))
    with pytest.raises(BackendUnavailableError, match=r"every usable backend failed.*'a'.*'b'"):
        host.get()


def test_instances_are_cached_per_backend_and_device() -> None:
    host = make_host(SpecPlugin(fake_spec("x", devices=("cpu", "gpu"))))
    cpu = host.get("x")
    assert host.get("x") is cpu and host.get() is cpu
    gpu = host.get("x", device="gpu")
    assert gpu is not cpu and gpu.device == "gpu"


def test_auto_device_prefers_an_accelerator_then_cpu() -> None:
    cpu_fast = fake_spec("cpufast", priority=100)
    gpu_slow = fake_spec("gpuslow", priority=50, devices=("gpu", "cpu"))
    host = make_host(SpecPlugin(cpu_fast, gpu_slow))
    backend = host.get(device="auto")
    assert (backend.name, backend.device) == ("gpuslow", "gpu")
    # A named backend runs on the first device its probe lists.
    assert host.get("cpufast", device="auto").device == "cpu"
    assert host.get("gpuslow", device="auto").device == "gpu"
    # No accelerator anywhere: cpu, by priority.
    only_cpu = make_host(SpecPlugin(fake_spec("a", priority=1), fake_spec("b", priority=2)))
    assert (only_cpu.get(device="auto").name, only_cpu.get(device="auto").device) == ("b", "cpu")


def test_auto_device_respects_the_requested_op() -> None:
    gpu_plain = fake_spec("gpuplain", priority=50, devices=("gpu", "cpu"), capabilities=())
    cpu_norm = fake_spec("cpunorm", priority=10, capabilities=("rms_norm",))
    host = make_host(SpecPlugin(gpu_plain, cpu_norm))
    backend = host.get(device="auto", op="rms_norm")
    assert (backend.name, backend.device) == ("cpunorm", "cpu")
