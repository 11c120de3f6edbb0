"""Several real ``jobwarden serve`` nodes on one Redis prefix, and small HTTP helpers for the
cluster tests (they watch the nodes with ``event_recorder``)."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.abc import Process, TaskGroup, TaskStatus

from tests.acceptance.event_recorder import plain_errors
from tests.redis_server import URL
from tests.server_process import ROOT, clean_env, running_server

PLUGIN = "tests.cluster_plugin:cluster"
POLL_S = 0.05


def store_url(prefix: str, redis_url: str = URL, **options: float) -> str:
    """The store URL of a cluster on ``prefix``, with options such as ``lease_s`` or
    ``max_deliveries``."""
    query = urllib.parse.urlencode({"prefix": prefix, **options})
    return f"{redis_url}?{query}"


class Node:
    """One running ``jobwarden serve`` of the cluster."""

    def __init__(self, process: Process, base: str, log: Path, node_id: str) -> None:
        self.process = process
        self.base = base
        self.log = log
        self.node_id = node_id

    @property
    def source(self) -> str:
        """The CloudEvent ``source`` of the events this node writes."""
        return f"jobwarden://{self.node_id}"

    @property
    def alive(self) -> bool:
        """True until the process has exited."""
        return self.process.returncode is None

    def __repr__(self) -> str:
        return f"Node({self.node_id!r}, {self.base})"


class Cluster:
    """Nodes started on one store URL; more can join later, and any can be killed."""

    def __init__(self, folder: Path, store: str, args: tuple[str, ...], tg: TaskGroup) -> None:
        self._folder = folder
        self._args = ("--store", store, "--plugin", PLUGIN, "--no-entry-points", *args)
        self._tg = tg
        self.nodes: list[Node] = []
        self._started = 0

    async def add(self, count: int) -> list[Node]:
        """Start ``count`` more nodes side by side; return them once each answers /v1/health."""
        started: list[Node] = []

        async def start_one() -> None:
            self._started += 1
            node: Node = await self._tg.start(self._run, self._started)
            started.append(node)

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(start_one)
        self.nodes.extend(started)
        return started

    async def _run(self, index: int, *, task_status: TaskStatus[Node]) -> None:
        env = clean_env(PYTHONPATH=str(ROOT))
        log_name = f"node{index}.log"
        async with running_server(self._folder, *self._args, env=env, log_name=log_name) as (
            process,
            base,
            log,
        ):
            async with aiohttp.ClientSession() as http, http.get(base + "/v1/health") as resp:
                health: dict[str, Any] = await resp.json()
            task_status.started(Node(process, base, log, str(health.get("node"))))
            await anyio.sleep_forever()

    def by_source(self, source: str) -> Node:
        """The node whose events carry ``source``."""
        [node] = [n for n in self.nodes if n.source == source]
        return node

    def alive(self) -> list[Node]:
        """The nodes still running."""
        return [n for n in self.nodes if n.alive]

    def logs(self) -> str:
        """Every node's output so far, for a failing assertion's message."""
        return "\n".join(f"--- {n!r}\n{n.log.read_text(errors='replace')}" for n in self.nodes)


@asynccontextmanager
async def cluster(folder: Path, store: str, count: int, *args: str) -> AsyncIterator[Cluster]:
    """``count`` nodes serving ``store`` (plus ``args``), with the cluster test plugin loaded;
    every node still running is killed afterwards."""
    with plain_errors():
        async with anyio.create_task_group() as tg:
            nodes = Cluster(folder, store, args, tg)
            await nodes.add(count)
            yield nodes
            tg.cancel_scope.cancel()


async def submit(
    http: aiohttp.ClientSession, node: Node, body: dict[str, Any], *, wait: float | None = None
) -> dict[str, Any]:
    """POST ``body`` to ``node``; the job it answers with (202, or 200 with ``wait``)."""
    query = "" if wait is None else f"?wait={wait}"
    async with http.post(f"{node.base}/v1/jobs{query}", json=body) as resp:
        answer: dict[str, Any] = await resp.json()
        assert resp.status in (200, 202), (resp.status, answer)
        job: dict[str, Any] = answer["job"]
        return job


async def get_json(http: aiohttp.ClientSession, node: Node, path: str) -> dict[str, Any]:
    """GET ``path`` on ``node``; the JSON body of its 200."""
    async with http.get(node.base + path) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, (path, resp.status, body)
        return body


def nap(seconds: float) -> dict[str, Any]:
    """A submit body for ``cluster.nap`` (repeatable after a crash)."""
    return {"tool": "cluster.nap", "input": {"seconds": seconds}}


async def until(check: Callable[[], Awaitable[bool]], *, seconds: float, what: str) -> None:
    """Call ``check`` every POLL_S until it says True, for state of another process that sends
    no event when it changes; fail saying ``what`` was awaited after ``seconds``."""
    for _ in range(int(seconds / POLL_S)):
        if await check():
            return
        await anyio.sleep(POLL_S)
    pytest.fail(f"{what}: not within {seconds} s")
