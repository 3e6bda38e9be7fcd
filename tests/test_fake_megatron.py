"""The CPU stand-in's rendezvous (tests/standins/fake_megatron.py), which the two-node Slurm
test relies on: nodes that agree meet; a repeated or out-of-range node rank, or nodes that
name different masters, fail as torchrun's rendezvous would, instead of training apart. Once
met, each node prints what Megatron prints there: node 0 the arguments and the end, the last
node the iterations."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import STANDIN
from helpers import free_port




def start_nodes(nodes: list[dict], record, *extra: str) -> list[subprocess.CompletedProcess]:
    procs = []
    for env in nodes:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FAKE_MEGATRON"))}
        environ.update(GPUS_PER_NODE="1", FAKE_MEGATRON_RENDEZVOUS_S="1.5", **env)
        procs.append(subprocess.Popen(
            [sys.executable, str(STANDIN), "--fake-sleep", "0", "--train-iters", "2",
             "--log-interval", "1", "--fake-record", str(record), *extra],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=30), *p.communicate()) for p in procs]


CASES = {
    "two nodes": ([0, 1], [0, 0], True),
    "three nodes": ([0, 1, 2], [0, 0, 0], True),
    "repeated rank": ([0, 0], [0, 0], False),
    "rank out of range": ([0, 2], [0, 0], False),
    "different masters": ([0, 1], [0, 1], False),
}


@pytest.mark.parametrize("case", CASES)
def test_nodes_meet_only_with_distinct_ranks_and_one_master(case, tmp_path):
    ranks, masters, ok = CASES[case]
    ports = [free_port(), free_port()]
    nodes = [{"NNODES": str(len(ranks)), "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": str(ports[master])} for rank, master in zip(ranks, masters)]
    done = start_nodes(nodes, tmp_path)
    if ok:
        assert [p.returncode for p in done] == [0] * len(ranks), [p.stderr for p in done]
        # Node 0 prints the arguments and the end, the last node the iterations, the nodes in
        # between nothing; every node knows all members.
        first, last = done[0].stdout, done[-1].stdout
        assert "[after training is done]" in first and " iteration " not in first
        assert f"using world size: {len(ranks)}," in first and "---- arguments ----" in first
        assert " iteration        2/       2 |" in last and "arguments" not in last
        assert "[after training is done]" not in last
        assert all(p.stdout == "" for p in done[1:-1])
        assert sorted(f.name for f in tmp_path.iterdir()) == [f"node{r}.json" for r in ranks]
    else:
        assert any(p.returncode != 0 for p in done)
        assert any("rendezvous at 127.0.0.1:" in p.stderr for p in done), [p.stderr for p in done]
        assert not any("[after training is done]" in p.stdout for p in done)


def nodes_env(n: int) -> list[dict]:
    port = free_port()
    return [{"NNODES": str(n), "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(port)} for rank in range(n)]


@pytest.mark.parametrize("nnodes,crash_node", [(n, c) for n in (2, 3) for c in (None, *range(n))])
def test_a_crash_on_one_node_ends_every_node(nnodes, crash_node, tmp_path):
    extra = ["--fake-crash-at", "2"] + ([] if crash_node is None else
                                        ["--fake-crash-node", str(crash_node)])
    done = start_nodes(nodes_env(nnodes), tmp_path, *extra)
    where = nnodes - 1 if crash_node is None else crash_node  # the last node by default
    for rank, p in enumerate(done):
        assert p.returncode == 1, (rank, p.stdout, p.stderr)
        assert ("ValueError: fake_megatron: crash in iteration 2" in p.stdout) == (rank == where)
        assert "[after training is done]" not in p.stdout
    assert " iteration        1/       2 |" in done[-1].stdout
    assert " iteration        2/" not in done[-1].stdout


def test_memory_lines_on_every_node_and_the_exit_duration_on_node_0(tmp_path):
    done = start_nodes(nodes_env(2), tmp_path, "--fake-memory-mb", "1000",
                       "--exit-duration-in-mins", "0", "--train-iters", "50")
    assert [p.returncode for p in done] == [0, 0], [p.stderr for p in done]
    assert "[Rank 0] (after 1 iterations) memory (MB) | allocated: 600.0 | max allocated: 1000.0" \
        in done[0].stdout
    assert "[Rank 1] (after 1 iterations) memory (MB) | allocated: 660.0 | max allocated: 1100.0" \
        in done[1].stdout
    assert "[exiting program after " in done[0].stdout and "[exiting" not in done[1].stdout
    assert " iteration        1/      50 |" in done[1].stdout
