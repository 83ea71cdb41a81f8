"""Throughput of a remote 3-step saga over NATS JetStream next to RabbitMQ.

``remote_throughput.py``'s saga (three steps, each carried out by another
service whose handler returns a small dict; the orchestrator's state in
SQLite) run in the same process, the same run, on both brokers, each with
its bare-client floor:

sk-rabbit     sagakit, ``RabbitTransport``; participants started with
              ``sagakit participant --transport amqp://…``
floor-rabbit  bare aio-pika (``amqp_echo.py``): the same messages, no saga
              library, no database
sk-nats       sagakit, ``NatsTransport``; participants started with
              ``sagakit participant --transport nats://…``
floor-nats    bare nats-py on JetStream (``nats_echo.py``): the same
              messages, no saga library, no database

each one saga at a time (``-seq``) and ``--concurrency`` in flight
(``-conc``). Every side has three service processes and its driver in this
process; the four systems' runs alternate so that a change in the machine's
load hits all of them. Each row is the median of ``--repeats`` timed runs
after a warm-up (which also waits for the services to start consuming). The
report prints each sagakit row over its own broker's floor, and NATS over
RabbitMQ for both sagakit and the floors. Numbers are printed, never
asserted.

    python benchmarks/remote_nats.py [--n 300] [--repeats 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import remote_throughput as rt

from sagakit import SQLiteStore
from sagakit.adapters.transport.nats import NatsTransport, token
from sagakit.adapters.transport.rabbitmq import RabbitTransport
from sagakit.runtime import loop as event_loop

DEFAULT_NATS = "nats://127.0.0.1:4222"
NATS_ENV = "SAGAKIT_TEST_NATS_URL"
SYSTEMS = ("sk-rabbit", "floor-rabbit", "sk-nats", "floor-nats")


class NatsFloor(rt.FloorSide):
    """The floor's driver on NATS (``nats_echo.EchoSagas``)."""

    def __init__(self, server: str, steps: list[str], reply: str) -> None:
        super().__init__(server, steps, reply)
        self.echo = rt.import_bench_module("nats_echo")


def start_services(args: argparse.Namespace, tag: str, tmp: Path, procs: Any) -> None:
    services = rt.import_bench_module("remote_services")
    for side, url in (("r", args.broker), ("n", args.nats)):
        for service in services.SERVICES:
            procs.start(
                f"sk-{side}-{service}",
                [
                    sys.executable,
                    "-m",
                    "sagakit.cli.main",
                    "--db",
                    str(tmp / f"participant-{side}-{service}.db"),
                    "participant",
                    f"remote_services:{service}",
                    "--transport",
                    url,
                ],
                rt.child_env(f"{tag}{side}", {}),
            )
    for service in services.SERVICES:
        procs.start(
            f"floor-r-{service}",
            [
                sys.executable,
                str(rt.HERE / "amqp_echo.py"),
                "echo",
                "--broker",
                args.broker,
                "--queue",
                f"floor-{tag}-{service}",
            ],
            rt.child_env(tag, {}),
        )
        procs.start(
            f"floor-n-{service}",
            [
                sys.executable,
                str(rt.HERE / "nats_echo.py"),
                "echo",
                "--server",
                args.nats,
                "--subject",
                f"floor.{tag}.{service}",
            ],
            rt.child_env(tag, {}),
        )


async def measure(
    args: argparse.Namespace, tag: str, tmp: Path, procs: Any
) -> dict[str, dict[str, list[float]]]:
    services = rt.import_bench_module("remote_services")
    runs: dict[str, dict[str, list[float]]] = {
        mode: {s: [] for s in SYSTEMS} for mode in ("seq", "conc")
    }
    rabbit = rt.SagakitSide(
        SQLiteStore(tmp / "orchestrator-r.db"),
        await RabbitTransport.connect(args.broker, prefix=rt.SAGAKIT_PREFIX),
        f"{tag}r",
    )
    nats_side = rt.SagakitSide(
        SQLiteStore(tmp / "orchestrator-n.db"),
        await NatsTransport.connect(args.nats),  # type: ignore[arg-type]
        f"{tag}n",
    )
    floor_r = rt.FloorSide(
        args.broker,
        [f"floor-{tag}-{s}" for s in services.SERVICES],
        f"floor-{tag}-replies",
    )
    floor_n = NatsFloor(
        args.nats,
        [f"floor.{tag}.{s}" for s in services.SERVICES],
        f"floor.{tag}.replies",
    )
    async with rabbit, nats_side, floor_r, floor_n:
        sides = dict(zip(SYSTEMS, (rabbit, floor_r, nats_side, floor_n), strict=True))
        for mode, conc in (("seq", 1), ("conc", args.concurrency)):
            for side in sides.values():  # warm-up; waits for the services too
                await side.timed(max(conc, args.n // 10), conc)
            for _ in range(args.repeats):
                for name, side in sides.items():
                    procs.check_alive()
                    seconds, _messages = await side.timed(args.n, conc)
                    runs[mode][name].append(args.n / seconds)
    return runs


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(runs: dict[str, dict[str, list[float]]], concurrency: int) -> list[str]:
    lines = [
        f"{'':14}{'seq sagas/s':>14}{f'conc ({concurrency}) sagas/s':>22}",
    ]
    rates = {mode: {s: median(r) for s, r in runs[mode].items()} for mode in runs}
    for name in SYSTEMS:
        lines.append(
            f"{name:14}{rates['seq'][name]:>14,.1f}{rates['conc'][name]:>22,.1f}"
        )
    lines.append("")
    for label, top, bottom in (
        ("sagakit/floor on RabbitMQ", "sk-rabbit", "floor-rabbit"),
        ("sagakit/floor on NATS", "sk-nats", "floor-nats"),
        ("NATS/RabbitMQ, sagakit", "sk-nats", "sk-rabbit"),
        ("NATS/RabbitMQ, floors", "floor-nats", "floor-rabbit"),
    ):
        seq = rates["seq"][top] / rates["seq"][bottom]
        conc = rates["conc"][top] / rates["conc"][bottom]
        lines.append(f"{label:30} seq {seq:5.2f}x   conc {conc:5.2f}x")
    return lines


async def delete_all(args: argparse.Namespace, tag: str) -> None:
    import nats  # noqa: PLC0415

    client = await nats.connect(args.nats)
    try:
        js = client.jetstream()
        starts = (f"sagakit_{token(f'bench-{tag}')}", f"floor_{tag}_")
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(starts):
                await js.delete_stream(info.config.name)
    finally:
        await client.close()
    services = rt.import_bench_module("remote_services")
    queues = [f"floor-{tag}-{s}" for s in (*services.SERVICES, "replies")]
    for logical in [services.queue_of(f"{tag}r", s) for s in services.SERVICES] + [
        services.reply_queue_of(f"{tag}r")
    ]:
        queues += [f"sagakit.{logical}", f"sagakit.{logical}.dlq"]
    await rt.delete_from_broker(args.broker, queues, [])


@contextlib.contextmanager
def running(args: argparse.Namespace, tag: str, tmp: Path) -> Iterator[Any]:
    procs = rt.Processes(tmp)
    try:
        yield procs
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            asyncio.run(delete_all(args, tag))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="sagas per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--broker", default=os.environ.get(rt.BROKER_ENV, rt.DEFAULT_BROKER)
    )
    parser.add_argument("--nats", default=os.environ.get(NATS_ENV, DEFAULT_NATS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = rt.load_average()
    started = time.perf_counter()
    tag = uuid.uuid4().hex[:10]
    print(
        f"sagakit over NATS JetStream and RabbitMQ, each with a bare-client floor: "
        f"{rt.STEPS} remote steps, median of {args.repeats} run(s) of {args.n} "
        f"sagas after a warm-up; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, nats-py {rt.version_of('nats-py')}, aio-pika "
        f"{rt.version_of('aio-pika')}, event loop {event_loop.loop_name()}"
    )
    with tempfile.TemporaryDirectory(prefix="sagakit-nats-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with running(args, tag, tmp) as procs:
            start_services(args, tag, tmp, procs)
            runs = event_loop.run(measure(args, tag, tmp, procs))
    print()
    for line in report(runs, args.concurrency):
        print(line)
    print(
        f"total time {time.perf_counter() - started:,.1f} s; load average "
        f"{load_at_start} at the start, {rt.load_average()} at the end"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
