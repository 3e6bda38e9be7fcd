#!/usr/bin/env python3
"""A CPU stand-in for `torchrun pretrain_gpt.py`: prints Megatron-Core 0.19's log lines.

The launch scripts take it through TRAIN_CMD and hand it every Megatron argument, e.g.

    TRAIN_CMD="python3 tests/standins/fake_megatron.py" bash experiments/generated/<run>.sh

It honours --train-iters, --log-interval, --global-batch-size, --lr and --exit-duration-in-mins
(fractions of a minute are accepted here, so tests can hit the limit in seconds; Megatron
itself takes whole minutes) and prints the real lines: the arguments dump, ` [date] iteration
N/ M | ... |`, `[after training is done]` or `[exiting program after X minutes]`. With
--profile --use-pytorch-profiler and rank 0 among --profile-ranks, a one-node launch writes,
after iteration --profile-step-end, a small PyTorch-profiler trace (one `ProfilerStep#N` per
profiled iteration, a GEMM, an attention and an NCCL kernel each) where Megatron's
trace_handler writes it: <--tensorboard-dir>/../torch_profile/rank-0.json.gz.

What goes wrong is chosen by options or, for runs of a matrix, by the env of a matrix axis
(`env: {FAKE_MEGATRON_CRASH_AT: 3}`); every option has an FAKE_MEGATRON_* twin:

    --fake-sleep S          seconds per iteration (FAKE_MEGATRON_SLEEP, default 0.02)
    --fake-crash-at N       raise in iteration N (FAKE_MEGATRON_CRASH_AT) ...
    --fake-crash KIND       ... as `value-error`, `oom` (CUDA out of memory) or `child-failed`
                            (a worker traceback followed by torchrun's ChildFailedError)
    --fake-hang-at N        stop printing in iteration N and sleep forever, ignoring the
                            exit duration (FAKE_MEGATRON_HANG_AT)
    --fake-hang-on-exit     stop at the exit duration as Megatron does, then never exit
                            (FAKE_MEGATRON_HANG_ON_EXIT)
    --fake-startup S        S seconds of start-up before the exit duration's clock starts
    --fake-exit-sleep S     S seconds from the exit-duration line to the exit (a save)
    --fake-ignore-sigterm   survive SIGTERM (FAKE_MEGATRON_IGNORE_SIGTERM=1)
    --fake-exit-code C      exit with C after a normal end (FAKE_MEGATRON_EXIT_CODE)
    --fake-record DIR       write what this node was started with to DIR/node<NODE_RANK>.json
                            (FAKE_MEGATRON_RECORD)
    --fake-crash-node K     with several nodes, the node whose worker raises (default: the
                            last, which logs the iterations) (FAKE_MEGATRON_CRASH_NODE)
    --fake-memory-mb MB     print Megatron's `[Rank N] (after K iterations) memory (MB)` line
                            on every node after the first logged iteration, `max allocated`
                            MB + 100 x node rank (FAKE_MEGATRON_MEMORY_MB; default 0: none)

Several nodes: the launch scripts hand torchrun NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT and
GPUS_PER_NODE; with TRAIN_CMD the stand-in reads them from its environment instead (the
.sbatch exports them). With NNODES > 1 the nodes meet as torchrun's would: node 0 listens on
MASTER_ADDR:MASTER_PORT (that address only) and every other node connects to it and says its
rank; node 0 refuses a repeated or out-of-range rank and answers everyone with the members,
once all NNODES have come (within FAKE_MEGATRON_RENDEZVOUS_S seconds, default 60). The nodes
then print what Megatron prints on them (megatron/training/training.py): node 0 (rank 0,
`print_rank_0`) the arguments dump and `print_datetime`'s markers (`[before the start of
training step]`, `[after training is done]`, `[exiting program after X minutes]`); the last
node (the last rank, `print_rank_last`) the iteration lines; every node its own memory line.
The nodes stay in step as a real run's collectives keep them: the last node starts its
iterations after node 0's dump and tells node 0 how training ended, so both end together; a
node whose worker crashed leaves, and the others then exit with status 1 without a word.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import signal
import sys
import time
import traceback

START = time.time()


def stamp() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")


def say(text: str = "") -> None:
    # Megatron prints from rank 0 with flush; a buffered stand-in would hide progress.
    print(text, flush=True)


def options(argv: list[str]) -> tuple[argparse.Namespace, argparse.Namespace]:
    env = os.environ.get
    fake = argparse.ArgumentParser(add_help=False)
    fake.add_argument("--fake-sleep", type=float, default=float(env("FAKE_MEGATRON_SLEEP", "0.02")))
    fake.add_argument("--fake-crash-at", type=int, default=int(env("FAKE_MEGATRON_CRASH_AT", "0")))
    fake.add_argument("--fake-crash", choices=("value-error", "oom", "child-failed"),
                      default=env("FAKE_MEGATRON_CRASH", "value-error"))
    fake.add_argument("--fake-hang-at", type=int, default=int(env("FAKE_MEGATRON_HANG_AT", "0")))
    fake.add_argument("--fake-startup", type=float, default=0.0)
    fake.add_argument("--fake-exit-sleep", type=float, default=0.0)
    fake.add_argument("--fake-hang-on-exit", action="store_true",
                      default=env("FAKE_MEGATRON_HANG_ON_EXIT", "0") == "1")
    fake.add_argument("--fake-ignore-sigterm", action="store_true",
                      default=env("FAKE_MEGATRON_IGNORE_SIGTERM", "0") == "1")
    fake.add_argument("--fake-exit-code", type=int, default=int(env("FAKE_MEGATRON_EXIT_CODE", "0")))
    fake.add_argument("--fake-record", default=env("FAKE_MEGATRON_RECORD", ""))
    fake.add_argument("--fake-crash-node", type=int, default=int(env("FAKE_MEGATRON_CRASH_NODE", "-1")))
    fake.add_argument("--fake-memory-mb", type=float, default=float(env("FAKE_MEGATRON_MEMORY_MB", "0")))
    mine, rest = fake.parse_known_args(argv)

    # Megatron's own flags; argparse keeps the last value, as Megatron does.
    meg = argparse.ArgumentParser(add_help=False)
    meg.add_argument("--train-iters", type=int, default=10)
    meg.add_argument("--log-interval", type=int, default=100)
    meg.add_argument("--global-batch-size", type=int, default=8)
    meg.add_argument("--lr", type=float, default=3e-4)
    meg.add_argument("--exit-duration-in-mins", type=float, default=None)
    meg.add_argument("--profile", action="store_true")
    meg.add_argument("--use-pytorch-profiler", action="store_true")
    meg.add_argument("--profile-step-start", type=int, default=10)
    meg.add_argument("--profile-step-end", type=int, default=12)
    meg.add_argument("--profile-ranks", type=int, nargs="+", default=[0])
    meg.add_argument("--tensorboard-dir", default=None)
    args, _ = meg.parse_known_args(rest)
    args.all = rest
    return mine, args


RENDEZVOUS_ENV = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE")


def rendezvous_env() -> dict:
    """The launch's rendezvous settings as the environment gives them (None when unset)."""
    return {name: os.environ.get(name) for name in RENDEZVOUS_ENV}


def world_size() -> int:
    return int(os.environ.get("NNODES") or 1) * int(os.environ.get("GPUS_PER_NODE") or 1)


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


class Link:
    """One node's connection to another: JSON messages, one a line."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.lines = conn.makefile("rb")

    def send(self, message: dict) -> None:
        try:
            _send(self.conn, message)
        except OSError:
            pass  # the peer is gone: it finds out by itself

    def receive(self) -> dict:
        line = self.lines.readline()
        if not line:
            raise ConnectionError("the peer closed the connection")
        return json.loads(line)


def _receive(conn: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)  # byte by byte: later messages stay for the Link
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        data += chunk
    return json.loads(data)


def rendezvous(timeout: float) -> tuple[list[dict], dict]:
    """Meet the other nodes at MASTER_ADDR:MASTER_PORT; returns (every member, by node rank;
    {node rank: Link} of the connections kept open: node 0 has one to every other node, the
    others one to node 0).

    Raises RuntimeError (what torchrun's rendezvous would report) when a node is missing,
    repeated or out of range after `timeout` seconds.
    """
    nnodes, rank = int(os.environ["NNODES"]), int(os.environ["NODE_RANK"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    me = {"node_rank": rank, "host": socket.gethostname(),
          "slurm_nodename": os.environ.get("SLURMD_NODENAME")}
    deadline = time.monotonic() + timeout
    if not 0 <= rank < nnodes:
        raise RuntimeError(f"NODE_RANK={rank} is outside 0..{nnodes - 1}")
    if rank == 0:
        # On a cluster node 0 can listen only on its own address; on the CI's two nodes of one
        # host every loopback address would do, so check that MASTER_ADDR names this node.
        own = os.environ.get("SLURMD_NODENAME")
        if own and socket.gethostbyname(addr) != socket.gethostbyname(own):
            raise RuntimeError(f"MASTER_ADDR={addr} is not this node ({own}): cannot listen there")
        members = {0: me}
        conns = []
        try:
            server = socket.create_server((addr, port))
        except OSError as err:
            raise RuntimeError(f"rendezvous at {addr}:{port}: cannot listen: {err}") from None
        with server:
            while len(members) < nnodes:
                server.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    raise RuntimeError(f"rendezvous at {addr}:{port}: {len(members)} of {nnodes} "
                                       f"nodes came within {timeout:g} s") from None
                peer = _receive(conn)
                if peer["node_rank"] in members or not 0 < peer["node_rank"] < nnodes:
                    _send(conn, {"error": f"node rank {peer['node_rank']} repeated or out of range"})
                    conn.close()
                    raise RuntimeError(f"rendezvous at {addr}:{port}: node rank "
                                       f"{peer['node_rank']} repeated or out of range")
                members[peer["node_rank"]] = peer
                conns.append(conn)
        everyone = [members[r] for r in range(nnodes)]
        links = {}
        for r, conn in zip([m["node_rank"] for m in everyone[1:]], conns_by_rank(conns, members)):
            _send(conn, {"members": everyone})
            conn.settimeout(None)
            links[r] = Link(conn)
        return everyone, links
    while True:
        conn = None
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            _send(conn, me)
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            answer = _receive(conn)
            break
        except OSError as err:
            if conn is not None:
                conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"rendezvous at {addr}:{port}: node {rank} could not join "
                                   f"within {timeout:g} s: {err}") from None
            time.sleep(0.2)
    if "error" in answer:
        conn.close()
        raise RuntimeError(f"rendezvous at {addr}:{port}: {answer['error']}")
    conn.settimeout(None)
    return answer["members"], {0: Link(conn)}


def conns_by_rank(conns: list, members: dict) -> list:
    """The connections of nodes 1, 2, ... in node-rank order (they came in any order)."""
    ranks = [r for r in members if r != 0]  # insertion order = arrival order = conns order
    return [conn for _, conn in sorted(zip(ranks, conns), key=lambda x: x[0])]


def record(folder: str, members: list[dict], argv: list[str]) -> None:
    """What this node was started with, for tests: DIR/node<NODE_RANK>.json."""
    env = rendezvous_env()
    path = os.path.join(folder, f"node{env['NODE_RANK'] or 0}.json")
    os.makedirs(folder, exist_ok=True)
    slurm = {k: v for k, v in os.environ.items() if k in ("SLURM_JOB_ID", "SLURM_NODEID",
             "SLURMD_NODENAME", "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_PROCID")}
    with open(path + ".tmp", "w") as out:
        json.dump({"env": env, "slurm": slurm, "world_size": world_size(), "argv": argv,
                   "members": members, "host": socket.gethostname()}, out, indent=1)
    os.replace(path + ".tmp", path)


def arguments_dump(args: argparse.Namespace) -> None:
    say(f"using world size: {world_size()}, data-parallel size: {world_size()}, "
        "context-parallel size: 1")
    say("------------------------ arguments ------------------------")
    pairs = []
    words = list(args.all)
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            continue
        value = "True"
        if words and not words[0].startswith("--"):
            value = words.pop(0)
        pairs.append((word[2:].replace("-", "_"), value))
    if "world_size" not in dict(pairs):  # Megatron's dump has it (it computes it)
        pairs.append(("world_size", str(world_size())))
    for name, value in sorted(pairs):
        say(f"  {name} {'.' * max(1, 48 - len(name))} {value}")
    say("-------------------- end of arguments ---------------------")
    say(f"[before the start of training step] datetime: {stamp()[:-7]} ")


def iteration_line(it: int, args: argparse.Namespace, ms: float) -> str:
    loss = 11.0 / (1 + 0.3 * it) + 0.05
    return (f" [{stamp()}] iteration {it:8d}/{args.train_iters:8d} |"
            f" consumed samples: {it * args.global_batch_size:12d} |"
            f" elapsed time per iteration (ms): {ms:.1f} |"
            f" throughput per GPU (TFLOP/s/GPU): {123.4:.1f} |"
            f" learning rate: {args.lr:.6E} |"
            f" global batch size: {args.global_batch_size:5d} |"
            f" lm loss: {loss:.6E} |"
            f" loss scale: {1.0:.1f} |"
            f" grad norm: {1.234:.3f} |"
            f" number of skipped iterations: {0:3d} |"
            f" number of nan iterations: {0:3d} |")


def crash(kind: str, it: int) -> int:
    if kind == "oom":
        message = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                   "total capacity of 79.19 GiB of which 1.02 GiB is free.")
    else:
        message = f"ValueError: fake_megatron: crash in iteration {it}"
    say("Traceback (most recent call last):")
    say('  File "/workspace/pretrain_gpt.py", line 41, in <module>')
    say("    pretrain(train_valid_test_datasets_provider, model_provider, ModelType.encoder_or_decoder)")
    say('  File "/tmp/site/megatron/training/training.py", line 2201, in train_step')
    say("    losses_reduced = forward_backward_func(")
    say(message)
    if kind == "child-failed":
        say(f"E1123 04:03:38.468000 1642 torch/distributed/elastic/multiprocessing/api.py:986] failed "
            f"(exitcode: 1) local_rank: 0 (pid: {os.getpid()}) of binary: {sys.executable}")
        say("Traceback (most recent call last):")
        say('  File "/opt/torch/.venv/bin/torchrun", line 10, in <module>')
        say("    sys.exit(main())")
        say("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ")
        say("=" * 60)
        say("pretrain_gpt.py FAILED")
        say("Root Cause (first observed failure):")
        say("[0]:")
        say("  exitcode  : 1 (pid: 1663)")
        say("=" * 60)
    return 1


def memory_line(it: int, base_mb: float) -> str:
    """Megatron's report_memory line of this node's first rank (`[Rank N] ...`)."""
    node = int(os.environ.get("NODE_RANK") or 0)
    rank = node * int(os.environ.get("GPUS_PER_NODE") or 1)
    peak = base_mb + 100 * node
    return (f"[Rank {rank}] (after {it} iterations) memory (MB) | allocated: {peak * 0.6:.1f} |"
            f" max allocated: {peak:.1f} | reserved: {peak * 1.1:.1f} | max reserved:"
            f" {peak * 1.1:.1f}")


def train(fake: argparse.Namespace, args: argparse.Namespace, crashes_here: bool,
          tell=lambda message: None):
    """The training loop of the node that logs the iterations: ("done", None),
    ("exit", minutes) at the exit duration, ("crash", iteration) when another node's worker
    raises there; returns the exit status when this node's worker crashed. `tell` passes
    ("memory", iteration) to node 0 after the first logged iteration."""
    interval = max(1, args.log_interval)
    last = time.time()
    for it in range(1, args.train_iters + 1):
        if it == fake.fake_crash_at:
            return crash(fake.fake_crash, it) if crashes_here else ("crash", it)
        if it == fake.fake_hang_at:
            while True:
                time.sleep(3600)
        time.sleep(fake.fake_sleep)
        if it % interval == 0:
            now = time.time()
            say(iteration_line(it, args, 1000 * (now - last) / interval))
            last = now
            if it == interval and fake.fake_memory_mb:
                say(memory_line(it, fake.fake_memory_mb))
                tell({"memory": it})
        if it == args.profile_step_end and profiles_rank_0(args):
            write_trace(args)
        # Megatron compares the minutes since start with the limit after every iteration.
        minutes = (time.time() - START) / 60
        if args.exit_duration_in_mins is not None and minutes > args.exit_duration_in_mins:
            return "exit", minutes
    return "done", None


def write_trace(args: argparse.Namespace) -> None:
    """Rank 0's profiler trace of iterations profile_step_start .. profile_step_end - 1, where
    Megatron writes it (its trace_handler, megatron/training/training.py)."""
    folder = os.path.join(f"{args.tensorboard_dir}", "..", "torch_profile")
    os.makedirs(folder, exist_ok=True)
    events, ts = [], 0
    for n, step in enumerate(range(args.profile_step_start, args.profile_step_end)):
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{step}",
                       "ts": ts, "dur": 1000, "pid": 1, "tid": 1})
        for name, start, dur in (("nvjet_sm90_tst_128x256_64x4_1x2_h_bz_coopA_NNT", 0, 500),
                                 ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16", 500, 300),
                                 ("ncclDevKernel_ReduceScatter_Sum_f32_RING_LL", 600, 300)):
            events.append({"ph": "X", "cat": "kernel", "name": name, "ts": ts + start, "dur": dur,
                           "pid": 0, "tid": 7, "args": {"correlation": 3 * n + len(events)}})
        ts += 1000
    import gzip
    with gzip.open(os.path.join(folder, "rank-0.json.gz"), "wt") as f:
        json.dump({"traceEvents": events}, f)


def profiles_rank_0(args: argparse.Namespace) -> bool:
    return (args.profile and args.use_pytorch_profiler and 0 in args.profile_ranks
            and os.environ.get("NODE_RANK", "0") == "0")


def finish(fake: argparse.Namespace, outcome: tuple) -> int:
    """Node 0's (rank 0's) last words for how training ended; the exit status."""
    how, value = outcome
    if how == "exit":
        say(f"[exiting program after {value} minutes] datetime: {stamp()[:-7]} ")
        time.sleep(fake.fake_exit_sleep)  # the checkpoint save Megatron makes before exiting
        while fake.fake_hang_on_exit:  # a teardown that never ends
            time.sleep(3600)
        return fake.fake_exit_code
    say(f"[after training is done] datetime: {stamp()[:-7]} ")
    return fake.fake_exit_code


def one_node(fake: argparse.Namespace, args: argparse.Namespace) -> int:
    arguments_dump(args)
    outcome = train(fake, args, True)
    return outcome if isinstance(outcome, int) else finish(fake, outcome)


def several_nodes(fake: argparse.Namespace, args: argparse.Namespace, links: dict) -> int:
    """This node's part of a run over NNODES > 1 nodes (see the module doc)."""
    nnodes, rank = int(os.environ["NNODES"]), int(os.environ["NODE_RANK"])
    last = nnodes - 1
    crash_node = last if fake.fake_crash_node < 0 else fake.fake_crash_node
    if rank == 0:
        arguments_dump(args)
        for link in links.values():
            link.send({"start": True})
        while True:
            try:
                message = links[last].receive()
            except ConnectionError:
                # The last node's worker died: this node's collectives fail with it.
                for r, link in links.items():
                    if r != last:
                        link.send({"end": "gone"})
                print(f"fake_megatron: node 0: node {last} left the run", file=sys.stderr,
                      flush=True)
                return 1
            if "memory" in message:
                say(memory_line(message["memory"], fake.fake_memory_mb))
                for r, link in links.items():
                    if r != last:
                        link.send(message)
                continue
            for r, link in links.items():
                if r != last:
                    link.send(message)
            how, value = message["end"], message.get("value")
            if how == "crash":
                return crash(fake.fake_crash, value) if crash_node == 0 else 1
            return finish(fake, (how, value))
    to_zero = links[0]
    try:
        to_zero.receive()  # the start: node 0 has printed its dump
    except ConnectionError:
        return 1
    if rank == last:
        outcome = train(fake, args, crash_node == rank, tell=to_zero.send)
        if isinstance(outcome, int):
            return outcome  # this node's worker crashed: its connection closes
        to_zero.send({"end": outcome[0], "value": outcome[1]})
        if outcome[0] == "crash":
            return 1
        if outcome[0] == "exit":
            while fake.fake_hang_on_exit:
                time.sleep(3600)
        return fake.fake_exit_code
    while True:  # a node in between: hears from node 0 how training goes
        try:
            message = to_zero.receive()
        except ConnectionError:
            return 1
        if "memory" in message:
            say(memory_line(message["memory"], fake.fake_memory_mb))
            continue
        if message["end"] == "crash":
            return crash(fake.fake_crash, message["value"]) if crash_node == rank else 1
        if message["end"] == "gone":
            return 1
        return fake.fake_exit_code


def main(argv: list[str]) -> int:
    global START
    fake, args = options(argv)
    if fake.fake_startup:
        # Megatron's --exit-duration-in-mins counts from pretrain()'s start, after start-up.
        time.sleep(fake.fake_startup)
        START = time.time()
    if fake.fake_ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    members, links = [], {}
    if int(os.environ.get("NNODES") or 1) > 1:
        try:
            members, links = rendezvous(float(os.environ.get("FAKE_MEGATRON_RENDEZVOUS_S", "60")))
        except RuntimeError as err:
            print(f"fake_megatron: node {os.environ.get('NODE_RANK')}: {err}", file=sys.stderr,
                  flush=True)
            return 1
    if fake.fake_record:
        record(fake.fake_record, members, argv)
    try:
        return several_nodes(fake, args, links) if links else one_node(fake, args)
    except KeyboardInterrupt:
        # What Ctrl-C does to a real run: a KeyboardInterrupt traceback and status 1.
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
