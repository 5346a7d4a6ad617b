"""Training across machines: torchrun's rendezvous, the node layout keys, and the shared-storage check.

The "nodes" here are separate launches on 127.0.0.1 (gloo on CPU), each started the way a
cluster starts them: `python -m ganlib.stages.train` on every node, which execs this node's torchrun.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
from conftest import REPO_ROOT
from test_distributed import ONE_STEP, assert_same_step_as
from train_support import one_thread, smooth_images, tiny_params, write_prepared

from ganlib.config import ParamsError
from ganlib.io.source import CodeDigest
from ganlib.training.checkpoint import list_checkpoints, run_identity
from ganlib.training.distributed import SHARED_CHECK_PREFIX
from ganlib.training.launch import (
    LaunchEnvironmentError,
    launch_command,
    launched_as_rank,
    needs_launcher,
    torchrun_command,
    world_from_env,
)
from ganlib.training.loop import train_gan

CODE = CodeDigest("c" * 64, {})  # a stand-in training code digest

LOG = logging.getLogger("test_multinode")
pytestmark = pytest.mark.usefixtures(one_thread.__name__)

TWO_NODES = ("train.nnodes=2", "train.nproc=1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(root: Path, overrides: Sequence[str]) -> subprocess.Popen:
    """One node of the job: what every machine of a cluster runs (it execs torchrun itself)."""
    command = [sys.executable, "-m", "ganlib.stages.train", "--params", str(REPO_ROOT / "params.yaml"), "--root", str(root)]
    for expression in overrides:
        command += ["--set", expression]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(nodes: list[subprocess.Popen], timeout_s: float = 150) -> list[tuple[int, str]]:
    try:
        outputs = [node.communicate(timeout=timeout_s)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    return [(node.returncode, output) for node, output in zip(nodes, outputs)]


# ---------------------------------------------------------------------- two nodes


def test_two_nodes_over_c10d_rendezvous_match_one_process(tmp_path):
    images = smooth_images(64, 32)
    single_root, shared_root = tmp_path / "single", tmp_path / "shared"
    for root in (single_root, shared_root):
        write_prepared(root, tiny_params(), images)
    single = train_gan(tiny_params(*ONE_STEP, "train.nproc=1"), LOG, single_root)

    port = _free_port()
    overrides = [*ONE_STEP, *TWO_NODES, f"train.rdzv_endpoint=127.0.0.1:{port}", f"train.rdzv_id=test-{port}"]
    results = _finish([_start_node(shared_root, overrides) for _ in range(2)])
    for status, output in results:
        assert status == 0, output
    # The nodes met at the endpoint (c10d) rather than each training alone.
    assert all("--rdzv_backend=c10d" in output for _, output in results)

    assert_same_step_as(single, shared_root)
    assert not list(shared_root.rglob(f"{SHARED_CHECK_PREFIX}*"))  # the check cleaned up after itself


@pytest.mark.slow  # ~25 s: the rank that cannot see the token keeps looking for SHARED_CHECK_WAIT_S (10 s)
def test_nodes_that_do_not_share_the_checkpoint_directory_refuse_to_train(tmp_path):
    """Each "node" has its own disk (its own --root): every rank stops with the same clear error."""
    images = smooth_images(64, 32)
    roots = [tmp_path / "node0-disk", tmp_path / "node1-disk"]
    for root in roots:
        write_prepared(root, tiny_params(), images)

    port = _free_port()
    # Fixed node ranks (torchrun's static rendezvous), so that node 0 is known to hold rank 0.
    overrides = [*ONE_STEP, *TWO_NODES, f"train.rdzv_endpoint=127.0.0.1:{port}", f"train.rdzv_id=test-{port}"]
    nodes = [_start_node(root, [*overrides, f"train.node_rank={rank}"]) for rank, root in enumerate(roots)]
    results = _finish(nodes)

    for root, (status, output) in zip(roots, results):
        assert status != 0, output
        assert "shared storage" in output and "visible to every node" in output, output
        assert str(root / "runs" / "checkpoints") in output, output  # names the directory, as that node sees it
        assert "rank 1 on" in output and "Training did not start" in output, output
        assert "--rdzv_backend=static" in output and "--node_rank=" in output
        checkpoints = root / "runs" / "checkpoints"
        assert not [p for d in checkpoints.iterdir() for p in list_checkpoints(d)]  # nothing trained
        assert not list(root.rglob(f"{SHARED_CHECK_PREFIX}*"))
        assert not (root / "runs" / "train").exists()


# ---------------------------------------------------------------------- launch command and environment


def test_launch_command_is_standalone_on_one_machine_and_a_rendezvous_across_several():
    one = launch_command(tiny_params("train.nproc=2", "train.microbatch=8").train, Path("p.yaml"), Path("."))
    assert "--standalone" in one and "--nproc_per_node=2" in one and not any("rdzv" in a for a in one)

    cfg = tiny_params(*TWO_NODES, "train.nproc=2", "train.microbatch=4", "train.rdzv_endpoint=node001:29500",
                      "train.rdzv_id=4242").train
    assert cfg.rdzv_id == "4242"  # a scheduler's numeric job id, as --set reads it
    many = launch_command(cfg, Path("p.yaml"), Path("/shared/repo"), ["train.kimg=1"])
    assert many[1:3] == ["-m", "torch.distributed.run"]
    assert many[3:8] == ["--nnodes=2", "--nproc_per_node=2", "--rdzv_backend=c10d",
                         "--rdzv_endpoint=node001:29500", "--rdzv_id=4242"]
    assert many[8:] == ["-m", "ganlib.stages.train", "--params", "p.yaml", "--root", "/shared/repo", "--set", "train.kimg=1"]
    assert "--standalone" not in many and not any(a.startswith("--node_rank") for a in many)

    # A fixed node rank: torchrun honours --node_rank only with the static rendezvous.
    fixed = launch_command(cfg.model_copy(update={"node_rank": 1}), Path("p.yaml"), Path("."))
    assert "--rdzv_backend=static" in fixed and "--node_rank=1" in fixed

    # One machine, but a chosen endpoint (e.g. two jobs on one host): a rendezvous there.
    endpoint = tiny_params("train.rdzv_endpoint=localhost:29600").train
    assert needs_launcher(endpoint)
    assert "--rdzv_endpoint=localhost:29600" in launch_command(endpoint, Path("p.yaml"), Path("."))
    assert not needs_launcher(tiny_params().train)
    assert torchrun_command(3, Path("p.yaml"), Path("."))[3:5] == ["--standalone", "--nproc_per_node=3"]


def test_a_process_started_as_a_rank_trains_as_that_rank_and_launches_nothing():
    pod = {"WORLD_SIZE": "4", "RANK": "3", "MASTER_ADDR": "job-0.job", "MASTER_PORT": "29500"}
    assert launched_as_rank(pod)
    world = world_from_env(pod)
    assert (world.rank, world.size, world.local_rank) == (3, 4, 0)  # one rank per pod: no LOCAL_RANK
    assert world_from_env({**pod, "LOCAL_RANK": "1"}).local_rank == 1
    # A job script that exports MASTER_ADDR for the rendezvous has not started any rank yet.
    assert not launched_as_rank({"MASTER_ADDR": "node001", "SLURM_PROCID": "0"})
    assert world_from_env({"MASTER_ADDR": "node001"}).size == 1
    with pytest.raises(LaunchEnvironmentError, match="MASTER_PORT is not set"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "node001"})
    with pytest.raises(LaunchEnvironmentError, match="RANK is not set"):
        world_from_env({"WORLD_SIZE": "2"})


# ---------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.nnodes=2", "train.microbatch=8"], r"train\.nnodes: 2 needs train\.rdzv_endpoint"),
        (["train.node_rank=0"], r"train\.node_rank: 0 needs train\.rdzv_endpoint"),
        (["train.nnodes=2", "train.microbatch=8", "train.rdzv_endpoint=a:1", "train.node_rank=2"],
         r"train\.node_rank: 2 must be below train\.nnodes \(2\)"),
        (["train.nnodes=2", "train.rdzv_endpoint=a:1"],
         r"batch_size \(16\) must be a multiple of nnodes \* nproc \* microbatch \(2 \* 1 \* 16 = 32\)"),
        (["train.rdzv_endpoint=node001"], r"train\.rdzv_endpoint: expected host:port"),
        (["train.rdzv_endpoint=node001:99999"], r"train\.rdzv_endpoint: expected host:port"),
        (["train.rdzv_id=two words"], r"train\.rdzv_id"),
        (["train.nnodes=0"], r"train\.nnodes"),
    ],
)
def test_node_layout_params_are_checked_with_messages_naming_the_keys(overrides, expected):
    with pytest.raises(ParamsError, match=expected):
        tiny_params(*overrides)


def test_the_node_layout_is_not_part_of_the_run_identity():
    """Same world size, same microbatches: the same run, so it resumes across layouts (checkpoint.py says why)."""
    one_machine = tiny_params("train.nproc=2", "train.microbatch=8")
    cluster = tiny_params("train.nproc=1", "train.microbatch=8", "train.nnodes=2", "train.rdzv_endpoint=node001:29500",
                          "train.rdzv_id=job-7", "train.node_rank=1")
    assert run_identity(one_machine, "data", CODE) == run_identity(cluster, "data", CODE)
    # ...while what the ranks compute still is.
    assert run_identity(one_machine, "data", CODE) != run_identity(
        tiny_params("train.nproc=2", "train.microbatch=4"), "data", CODE)
