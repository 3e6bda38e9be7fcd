"""The CPU stand-in's rendezvous (tests/standins/fake_megatron.py), which the two-node Slurm
test relies on: nodes that agree meet; a repeated or out-of-range node rank, or nodes that
name different masters, fail as torchrun's rendezvous would, instead of training apart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from test_run_queue import STANDIN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nodes(nodes: list[dict], record) -> list[subprocess.CompletedProcess]:
    procs = []
    for env in nodes:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        environ.update(GPUS_PER_NODE="1", FAKE_MEGATRON_RENDEZVOUS_S="1.5", **env)
        procs.append(subprocess.Popen(
            [sys.executable, str(STANDIN), "--fake-sleep", "0", "--train-iters", "2",
             "--log-interval", "1", "--fake-record", str(record)],
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
        # Only node 0 prints Megatron's log; every node knows all members.
        assert "[after training is done]" in done[0].stdout
        assert all(p.stdout == "" for p in done[1:])
        assert f"using world size: {len(ranks)}," in done[0].stdout
        assert sorted(f.name for f in tmp_path.iterdir()) == [f"node{r}.json" for r in ranks]
    else:
        assert any(p.returncode != 0 for p in done)
        assert any("rendezvous at 127.0.0.1:" in p.stderr for p in done), [p.stderr for p in done]
        assert not any("[after training is done]" in p.stdout for p in done)
