"""The scheduler as a process of its own, as kube-scheduler is: it reaches
the API server through the server's local socket, so scheduling and the
API server's work (the binds among it) each get a core. ``netplane server``
starts one beside itself and starts it again if it ends; ``netplane
scheduler`` runs one by hand (with the server's controllers off, say)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import uvloop

from netplane.cluster import gcpolicy
from netplane.cluster.client import Client, Connection
from netplane.cluster.scheduler import config
from netplane.cluster.scheduler.loop import Scheduler

log = logging.getLogger(__name__)
USER_AGENT = "kube-scheduler"


def command(socket: Path, config_file: Path | None) -> list[str]:
    argv = [sys.executable, "-m", __name__, "--socket-path", str(socket)]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    return argv


async def serve(socket: Path, profiles: list[config.ProfileSpec] | None,
                stop: asyncio.Event) -> None:
    async with Client(Connection(socket=str(socket)), user_agent=USER_AGENT) as client:
        scheduler = Scheduler(client, profiles=profiles)

        async def settle_once_synced() -> None:
            await asyncio.gather(*(inf.synced.wait() for inf in scheduler.informers()))
            gcpolicy.settle()
        settling = asyncio.create_task(settle_once_synced())
        task = asyncio.create_task(scheduler.run())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        settling.cancel()
        for t in (task, waiter):
            t.cancel()
        results = await asyncio.gather(task, waiter, return_exceptions=True)
        failed = results[0]
        if isinstance(failed, BaseException) and not isinstance(failed,
                                                                asyncio.CancelledError):
            raise failed


def run(socket: Path, config_file: Path | None) -> None:
    profiles = config.load(config_file) if config_file is not None else None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(socket, profiles, stop)

    gcpolicy.configure()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="netplane scheduler", description=__doc__)
    ap.add_argument("--socket-path", default="/run/netplane/api.sock")
    ap.add_argument("--config", metavar="FILE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(Path(args.socket_path), Path(args.config) if args.config else None)
    except (OSError, config.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
