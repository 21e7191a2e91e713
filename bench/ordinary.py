"""Ordinary load (issue 20): what a message costs at 1,000 msg/s, and sign-ups at once.

Scenarios, each on SQLite and PostgreSQL:
  ordinary  20 pairs, saturated (window 20) then a steady 1,000 msg/s (open
            loop) on the same server: server CPU per delivered message at
            each, their ratio, latency; on PostgreSQL the CPU of the bench
            database's PostgreSQL backends beside Pigeon's
  signups   200 sign-ups 50 at a time, then 1,000 200 at a time (code
            request and verify, the code read from the console SMS outbox):
            5xx answers, p99 per request, sign-ups per second
  httpcost  server CPU per request of POST /v1/auth/code and /v1/auth/verify,
            10 requests in flight

    python -m bench.ordinary [--databases sqlite,postgresql] [--scenarios ...] [--quick]

``make bench`` runs them too (``bench/harness.py``). Settings for the server
come from the environment (``PIGEON_COMMIT_GATHER_MS=1 python -m bench.ordinary``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

from bench.common import (
    POSTGRES,
    Client,
    PigeonServer,
    Workspace,
    commit_counts,
    latency_ms,
    percentile,
    pin_generator,
    process_cpu_seconds,
    settle,
)

PAIRS = 20
PER_MESSAGE = "server_cpu_us_per_message"
RATE = 1000  # messages per second, over all pairs
# Sign-ups come from one address here; the per-address limits are not what is measured.
OPEN_LIMITS = {"send_code_limit_per_ip": "1000000/hour", "verify_limit_per_ip": "1000000/hour"}


class PostgresBackends:
    """CPU of the PostgreSQL backends serving one database (``pg_stat_activity``, /proc).

    Only the bench database's own backends: the cluster's shared processes
    (WAL writer, checkpointer) also serve other databases on this machine.
    A backend that exits during the span takes its CPU with it (the server's
    pools keep theirs open).
    """

    def __init__(self, database: str) -> None:
        self._database = database
        self._start: dict[int, float] = {}
        self._sessions = 0

    async def _seconds(self) -> dict[int, float]:
        conn = await asyncpg.connect(POSTGRES)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                self._database,
            )
        finally:
            await conn.close()
        seconds = {}
        for row in rows:
            try:
                seconds[row["pid"]] = process_cpu_seconds(row["pid"])
            except OSError:  # gone meanwhile
                continue
        return seconds

    async def start(self) -> None:
        self._start = await self._seconds()
        self._sessions = await self._sessions_so_far()

    async def _sessions_so_far(self) -> int:
        conn = await asyncpg.connect(POSTGRES)
        try:
            found = await conn.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = $1", self._database
            )
        finally:
            await conn.close()
        return int(found or 0)

    async def sessions_opened(self) -> int:
        """Connections opened to the database since ``start`` (PostgreSQL 14 and later)."""
        return await self._sessions_so_far() - self._sessions

    async def stop(self) -> float:
        end = await self._seconds()
        return sum(value - self._start.get(pid, 0.0) for pid, value in end.items())


def reset_counts(clients: list[tuple[Client, Client, str]]) -> None:
    """Each span counts its own deliveries."""
    for _, receiver, _ in clients:
        receiver.latencies.clear()
        receiver.received = 0


async def measured_span(
    clients: list[tuple[Client, Client, str]],
    base_url: str,
    pid: int,
    database: str | None,
    mode: str,
    seconds: float,
) -> dict[str, Any]:
    """One span of the harness's pairs scenario, with PostgreSQL's backends beside it."""
    from bench.harness import run_pairs_scenario

    reset_counts(clients)
    backends = PostgresBackends(database) if database else None
    if backends:
        await backends.start()
    commits = await commit_counts(base_url)
    result = await run_pairs_scenario(clients, pid, mode, seconds, f"ordinary/{mode}")
    after = await commit_counts(base_url)
    batches, operations = after[0] - commits[0], after[1] - commits[1]
    # What the CPU figures come from, and what the machine's noise does not move much.
    result["commits_per_message"] = round(batches / max(result["delivered"], 1), 2)
    result["operations_per_commit"] = round(operations / max(batches, 1), 1)
    if backends:
        postgres_cpu = await backends.stop()
        result["postgres_cpu_us_per_message"] = round(
            1e6 * postgres_cpu / max(result["delivered"], 1), 1
        )
    return result


async def scenario_ordinary(kind: str, seconds: float) -> dict[str, Any]:
    """Saturated, then 1,000 msg/s, on one server and the same sockets: CPU per message
    at each, and the ratio."""
    from bench.harness import close_all, pairs

    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url)
        server.start()
        try:
            await server.wait_ready()
            database = ws.database.name if kind == "postgresql" else None
            clients = await pairs(server, ws.database.url, PAIRS)
            await asyncio.sleep(0.5)
            saturated = await measured_span(
                clients, server.url, server.pid, database, "throughput", seconds
            )
            await settle([server.url])  # the saturated span's tail is not measured below
            steady = await measured_span(clients, server.url, server.pid, database, "rate", seconds)
            await close_all(clients)
        finally:
            server.stop()
    return spans(saturated, steady)


async def scenario_relay_ordinary(seconds: float) -> dict[str, Any]:
    """The ordinary scenario against the bare relay (``bench/relay.py``: the same frames,
    no work): what the frames alone cost at each load, and their own ratio."""
    from bench.harness import close_all, relay_pairs, relay_process, run_pairs_scenario

    async with relay_process() as (pid, port):
        clients = await relay_pairs(port, PAIRS)
        saturated = await run_pairs_scenario(clients, pid, "throughput", seconds, "")
        await asyncio.sleep(0.5)
        reset_counts(clients)
        steady = await run_pairs_scenario(clients, pid, "rate", seconds, "")
        await close_all(clients)
    return spans(saturated, steady)


def spans(saturated: dict[str, Any], steady: dict[str, Any]) -> dict[str, Any]:
    return {
        "saturated": saturated,
        "steady": steady,
        "cpu_ratio_steady_to_saturated": round(
            steady[PER_MESSAGE] / max(saturated[PER_MESSAGE], 0.1), 2
        ),
    }


def compare_to_relay(scenarios: dict[str, Any], databases: list[str]) -> None:
    """Each database's CPU per message over the relay's, saturated and at 1,000 msg/s."""
    relay = scenarios.get("relay/ordinary")
    for kind in databases:
        pigeon = scenarios.get(f"{kind}/ordinary")
        if relay and pigeon:
            for span in ("saturated", "steady"):
                pigeon[f"cpu_over_relay_{span}"] = round(
                    pigeon[span][PER_MESSAGE] / max(relay[span][PER_MESSAGE], 0.1), 2
                )


_CODE = re.compile(r"\b(\d{6})\b")


class CodeBook:
    """The codes the console SMS provider wrote, read as the file grows."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._codes: dict[str, str] = {}

    def code(self, phone: str) -> str:
        if phone not in self._codes and self._path.exists():
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
            complete = data.rfind(b"\n") + 1  # a line still being written waits
            self._offset += complete
            for line in data[:complete].splitlines():
                message = json.loads(line)
                code = _CODE.search(message["body"])
                if message["template"] == "verification_code" and code:
                    self._codes[message["to"]] = code.group(1)
        return self._codes[phone]


async def sign_ups(
    http: aiohttp.ClientSession, book: CodeBook, phones: list[str], at_once: int, server_pid: int
) -> dict[str, Any]:
    """``phones`` sign up, ``at_once`` at a time: each a code request, then its verify.

    The requests go through aiohttp, not httpx: httpx spent ~3.7 ms of the
    generator's CPU per request, so with 50 people at once the generator's
    core was the limit (97 % busy, the server's 50 %) and the latency
    measured was mostly its own queue.
    """
    timings: dict[str, list[float]] = {"code": [], "verify": []}
    statuses: dict[str, int] = {}
    todo = iter(phones)

    async def timed(step: str, path: str, body: dict[str, Any]) -> bool:
        started = time.perf_counter()
        try:
            async with http.post(path, json=body) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        timings[step].append(time.perf_counter() - started)
        statuses[f"{step} {status}"] = statuses.get(f"{step} {status}", 0) + 1
        return status in ("200", "202")

    async def person() -> None:
        for phone in todo:
            if not await timed("code", "/v1/auth/code", {"phone": phone}):
                continue
            body = {
                "phone": phone,
                "code": book.code(phone),
                "device": {"name": "bench", "platform": "cli"},
            }
            await timed("verify", "/v1/auth/verify", body)

    started = time.perf_counter()
    cpu_before = process_cpu_seconds(server_pid)
    own_before = time.process_time()
    await asyncio.gather(*(person() for _ in range(at_once)))
    elapsed = time.perf_counter() - started
    server_cpu = process_cpu_seconds(server_pid) - cpu_before
    client_cpu = time.process_time() - own_before
    verified = statuses.get("verify 200", 0)
    return {
        "sign_ups": len(phones),
        "at_once": at_once,
        "verified": verified,
        "errors_5xx": sum(n for key, n in statuses.items() if key.split()[1].startswith("5")),
        "statuses": statuses,
        "sign_ups_per_second": round(verified / elapsed, 1),
        # Near 1.0 the server's core is the limit; well under it, something waits.
        "server_cpu_share": round(server_cpu / elapsed, 2),
        "server_cpu_ms_per_sign_up": round(server_cpu * 1000 / max(verified, 1), 2),
        "client_cpu_share": round(client_cpu / elapsed, 2),
        "code_ms": latency_ms(timings["code"]),
        "verify_ms": latency_ms(timings["verify"]),
        "p99_ms": round(percentile(timings["code"] + timings["verify"], 0.99) * 1000, 1),
    }


async def scenario_signups(kind: str, quick: bool) -> dict[str, Any]:
    rounds = [(50, 10), (200, 50)] if quick else [(200, 50), (1000, 200)]
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url, **OPEN_LIMITS)
        server.start()
        try:
            await server.wait_ready()
            book = CodeBook(ws.data_dir / "sms-outbox.jsonl")
            connector = aiohttp.TCPConnector(limit=max(n for _, n in rounds))
            timeout = aiohttp.ClientTimeout(total=60)
            result = {}
            async with aiohttp.ClientSession(
                server.url, connector=connector, timeout=timeout
            ) as http:
                for index, (count, at_once) in enumerate(rounds):
                    phones = [f"+1415{2 + index}{n:06d}" for n in range(count)]
                    result[f"{count}_by_{at_once}"] = await sign_ups(
                        http, book, phones, at_once, server.pid
                    )
            return result
        finally:
            server.stop()


async def scenario_httpcost(kind: str, quick: bool) -> dict[str, Any]:
    """Server CPU per request of the two sign-up calls, each measured on its own."""
    count, in_flight = (100, 10) if quick else (500, 10)
    async with Workspace(kind) as ws:
        server = PigeonServer(ws.data_dir, ws.database.url, **OPEN_LIMITS)
        server.start()
        try:
            await server.wait_ready()
            book = CodeBook(ws.data_dir / "sms-outbox.jsonl")
            phones = [f"+14159{n:06d}" for n in range(count)]
            result: dict[str, Any] = {"requests": count, "in_flight": in_flight}
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                # Warm up (imports, statement caches, the connection pool) before measuring.
                await http.post("/v1/auth/code", json={"phone": "+14158999999"})

                async def each(step: str, request: Callable[[str], Awaitable[Any]]) -> None:
                    todo = iter(phones)

                    async def lane() -> None:
                        for phone in todo:
                            response = await request(phone)
                            assert response.status_code in (200, 202), response.text

                    cpu, started = process_cpu_seconds(server.pid), time.perf_counter()
                    await asyncio.gather(*(lane() for _ in range(in_flight)))
                    elapsed = time.perf_counter() - started
                    used = process_cpu_seconds(server.pid) - cpu
                    result[f"{step}_server_cpu_us_per_request"] = round(1e6 * used / count)
                    result[f"{step}_requests_per_second"] = round(count / elapsed)

                await each("code", lambda p: http.post("/v1/auth/code", json={"phone": p}))
                device = {"name": "bench", "platform": "cli"}
                await each(
                    "verify",
                    lambda p: http.post(
                        "/v1/auth/verify", json={"phone": p, "code": book.code(p), "device": device}
                    ),
                )
            return result
        finally:
            server.stop()


SCENARIOS = ("ordinary", "signups", "httpcost")


async def run(kind: str, wanted: list[str], quick: bool) -> dict[str, Any]:
    """The wanted scenarios of this module on one database: ``{"<kind>/<name>": figures}``."""
    out: dict[str, Any] = {}
    if "ordinary" in wanted:
        out[f"{kind}/ordinary"] = await scenario_ordinary(kind, 3 if quick else 10)
        print(f"{kind}/ordinary: {out[f'{kind}/ordinary']}", flush=True)
    if "signups" in wanted:
        out[f"{kind}/signups"] = await scenario_signups(kind, quick)
        print(f"{kind}/signups: {out[f'{kind}/signups']}", flush=True)
    if "httpcost" in wanted:
        out[f"{kind}/httpcost"] = await scenario_httpcost(kind, quick)
        print(f"{kind}/httpcost: {out[f'{kind}/httpcost']}", flush=True)
    return out


# The targets of issue 20 (docs/performance.md), read like the harness's TARGETS.
TARGETS = {
    "CPU/msg at 1,000 msg/s over saturated": (
        "ordinary",
        ("cpu_ratio_steady_to_saturated",),
        "<=",
        3.0,
    ),
    "p99 at 1,000 msg/s, 20 pairs (ms)": ("ordinary", ("steady", "p99_ms"), "<", 10.0),
    "CPU/msg saturated over the relay's": ("ordinary", ("cpu_over_relay_saturated",), "<=", 2.0),
    "5xx in 200 sign-ups, 50 at once": ("signups", ("200_by_50", "errors_5xx"), "<=", 0),
    "p99 per sign-up request, 50 at once (ms)": ("signups", ("200_by_50", "p99_ms"), "<", 250.0),
    "5xx in 1,000 sign-ups, 200 at once": ("signups", ("1000_by_200", "errors_5xx"), "<=", 0),
}


def targets(scenarios: dict[str, Any], databases: list[str]) -> list[str]:
    lines = []
    for kind in databases:
        for label, (scenario, path, op, bound) in TARGETS.items():
            value: Any = scenarios.get(f"{kind}/{scenario}")
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is None:
                continue
            met = value <= bound if op == "<=" else value < bound
            verdict = "met" if met else "MISSED"
            lines.append(f"{kind:<11} {label:<42} {value:>8} (target {op} {bound}): {verdict}")
    if relay := scenarios.get("relay/ordinary"):
        label = "CPU/msg at 1,000 msg/s over saturated"
        ratio = relay["cpu_ratio_steady_to_saturated"]
        lines.append(f"{'relay':<11} {label:<42} {ratio:>8} (the same frames, no work)")
    return lines


async def main(args: argparse.Namespace) -> None:
    pin_generator()
    wanted = args.scenarios.split(",")
    databases = args.databases.split(",")
    scenarios: dict[str, Any] = {}
    if "ordinary" in wanted:
        scenarios["relay/ordinary"] = await scenario_relay_ordinary(3 if args.quick else 10)
        print(f"relay/ordinary: {scenarios['relay/ordinary']}", flush=True)
    for kind in databases:
        scenarios.update(await run(kind, wanted, args.quick))
    compare_to_relay(scenarios, databases)
    print()
    for line in targets(scenarios, databases):
        print(line)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args))


if __name__ == "__main__":
    cli()
