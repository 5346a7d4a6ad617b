"""The speed probe: measured choices, kept per machine, never flipping on noise."""

from __future__ import annotations

import dataclasses
import json

import torch

from ganlib.hardware.machine import SPEED_FLAGS, MachineInfo, available_cpus, cpu_model_and_flags, describe_machine
from ganlib.hardware.probe import PROBE_CACHE_FILE, fastest, probed_choice, time_candidates


def test_fastest_keeps_the_preferred_setting_unless_another_clearly_wins():
    assert fastest({"fp32": 1.00, "bf16": 0.95}, prefer="fp32", margin=0.10) == "fp32"
    assert fastest({"fp32": 1.00, "bf16": 0.50}, prefer="fp32", margin=0.10) == "bf16"
    assert fastest({"fp32": 0.50, "bf16": 1.00}, prefer="fp32", margin=0.10) == "fp32"


def test_time_candidates_times_every_candidate_after_a_warm_up():
    calls = {"a": 0, "b": 0}

    def counting(name):
        def run():
            calls[name] += 1
        return run

    seconds = time_candidates({"a": counting("a"), "b": counting("b")}, rounds=3)
    assert calls == {"a": 4, "b": 4}
    assert set(seconds) == {"a", "b"} and all(s >= 0 for s in seconds.values())


def test_a_choice_is_measured_once_per_machine_and_workload(tmp_path):
    measurements = []

    def measure():
        measurements.append(1)
        return {"fp32": 1.0, "bf16": 0.4}

    first = probed_choice(tmp_path, "CPU X", "cpu|X", "dcgan 64", measure, prefer="fp32", margin=0.1)
    again = probed_choice(tmp_path, "CPU X", "cpu|X", "dcgan 64", measure, prefer="fp32", margin=0.1)
    assert (first.choice, first.cached) == ("bf16", False)
    assert (again.choice, again.cached, again.seconds) == ("bf16", True, first.seconds)
    assert len(measurements) == 1
    # Another machine, or another workload, measures anew.
    probed_choice(tmp_path, "CPU Y", "cpu|Y", "dcgan 64", measure, prefer="fp32", margin=0.1)
    probed_choice(tmp_path, "CPU X", "cpu|X", "resnet 128", measure, prefer="fp32", margin=0.1)
    assert len(measurements) == 3
    assert len(json.loads((tmp_path / PROBE_CACHE_FILE).read_text())["entries"]) == 3
    assert "bf16" in first.summary() and "CPU X" in first.summary()


def test_a_damaged_cache_only_costs_a_measurement(tmp_path):
    (tmp_path / PROBE_CACHE_FILE).write_text("{not json")
    result = probed_choice(tmp_path, "CPU X", "cpu|X", "w", lambda: {"fp32": 1.0}, prefer="fp32", margin=0.1)
    assert result.choice == "fp32" and not result.cached
    assert json.loads((tmp_path / PROBE_CACHE_FILE).read_text())["entries"]


def test_cpu_model_and_speed_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
        "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\nmodel name\t: ignored\n"
    )
    model, flags = cpu_model_and_flags(cpuinfo)
    assert model == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert [f for f in SPEED_FLAGS if f in flags] == ["avx2", "avx512f"]  # no native bf16 on this one


def test_the_machine_key_ignores_the_thread_count_but_not_the_cpus_or_torch():
    """torchrun gives each process one thread: the same machine for the cache, shown as it ran in logs."""
    machine = MachineInfo("cpu", "AMD EPYC 9R14", ("avx2", "avx512_bf16"), cpus=2, threads=2, torch_version="2.14.1")
    one_thread = dataclasses.replace(machine, threads=1)
    assert one_thread.cache_key() == machine.cache_key()
    assert "1 torch threads" in one_thread.describe() and "2 CPUs" in one_thread.describe()
    for other in (dict(cpus=4), dict(torch_version="2.15.0"), dict(flags=("avx2",)), dict(name="Intel Xeon")):
        assert dataclasses.replace(machine, **other).cache_key() != machine.cache_key()
    # A key of the older format (threads where the CPU count is now) never matches a new one.
    assert machine.cache_key() != "cpu|AMD EPYC 9R14|avx2,avx512_bf16|2|2.14.1"


def test_this_machine_is_described_with_its_cpus_and_threads():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = describe_machine(torch.device("cpu"))
        torch.set_num_threads(2)
        two = describe_machine(torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert (one.threads, two.threads) == (1, 2) and one.cpus == two.cpus == available_cpus() >= 1
    assert one.cache_key() == two.cache_key()
