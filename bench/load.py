"""The bench's taps, made by `wrk` (a compiled load tool, from Debian) with bench/taps.lua: each
prebuilt request sent once, `connections` of them in flight, every answer read back as it comes
with its send and answer times. A Python client spent as much CPU per tap as the api it measured
(2.3 ms, issue 18); wrk spends a few hundredths of that, so the figures show Kassa's cost.

A request that gets no answer (a socket error, wrk stopped at its cap) is counted, never raised:
`Taps.unanswered` names them."""

import asyncio
import json
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCRIPT = Path(__file__).with_name("taps.lua")
TAIL_SECONDS = 0.02  # how often the answers file is read while wrk runs


@dataclass(frozen=True)
class Tap:
    id: str  # 8 to 64 of [A-Za-z0-9._-]: the api echoes it as X-Request-Id
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def raw(self, host: str) -> bytes:
        body = json.dumps(self.body, separators=(",", ":")).encode()
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"X-Request-Id: {self.id}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


@dataclass(frozen=True)
class Answer:
    tap: Tap
    status: int
    sent: float  # wall-clock seconds (time.time()), taken by wrk
    answered: float
    body: dict[str, Any]

    @property
    def latency(self) -> float:
        return self.answered - self.sent

    @property
    def code(self) -> str:
        """The answer in one word: `created` for a 200 or 201, else the problem's `code`."""
        if self.status in (200, 201):
            return "created"
        return str(self.body.get("code") or self.status)


@dataclass
class Taps:
    answers: list[Answer] = field(default_factory=list)
    unanswered: list[Tap] = field(default_factory=list)
    cpu_seconds: float = 0.0  # wrk's own

    @property
    def first_sent(self) -> float:
        return min(answer.sent for answer in self.answers)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench: wrk is missing: `make bench` installs it (apt-get install -y wrk)")
    return found


def children_cpu_seconds() -> float:
    """User + system CPU of this process's children that ended and were waited for (wrk's)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _answer(line: bytes, by_id: dict[str, Tap]) -> Answer | None:
    parts = line.decode().split(" ", 4)
    tap = by_id.get(parts[0])
    if tap is None:
        return None
    try:
        body = json.loads(parts[4]) if len(parts) == 5 and parts[4].strip() else {}
    except ValueError:
        body = {}
    return Answer(tap, int(parts[1]), float(parts[2]), float(parts[3]), body)


async def send(
    base_url: str,
    taps: list[Tap],
    connections: int,
    cap_seconds: float,
    on_answer: Callable[[Answer], None] = lambda answer: None,
) -> Taps:
    """Sends `taps` with wrk, `connections` in flight, until all are answered or `cap_seconds`
    pass; `on_answer` sees each answer as it comes (to follow it up while the rest run)."""
    url = urlsplit(base_url)
    by_id = {tap.id: tap for tap in taps}
    result = Taps()
    with tempfile.TemporaryDirectory(prefix="kassa-taps") as folder:
        requests, answers = Path(folder) / "requests", Path(folder) / "answers"
        with requests.open("wb") as out:
            for tap in taps:
                raw = tap.raw(url.netloc)
                out.write(f"{tap.id} {len(raw)}\n".encode() + raw)
        cpu_before, errors = children_cpu_seconds(), Path(folder) / "errors"
        with errors.open("wb") as error_output:
            wrk = await asyncio.create_subprocess_exec(
                wrk_binary(),
                "-t1",
                f"-c{max(1, min(connections, len(taps)))}",
                f"-d{int(cap_seconds)}s",
                f"--timeout={int(cap_seconds)}s",
                "-s",
                str(SCRIPT),
                base_url,
                "--",
                str(requests),
                str(answers),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=error_output,
            )
        done, offset, pending = answers.with_name("answers.done"), 0, b""
        deadline = time.monotonic() + cap_seconds + 5
        while True:
            finished = done.exists() or wrk.returncode is not None or time.monotonic() > deadline
            if answers.exists():
                with answers.open("rb") as source:
                    source.seek(offset)
                    chunk = source.read()
                offset += len(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if (answer := _answer(line, by_id)) is not None:
                        result.answers.append(answer)
                        on_answer(answer)
            if finished:
                break
            await asyncio.sleep(TAIL_SECONDS)
        if wrk.returncode is None:
            wrk.terminate()
        await wrk.wait()
        result.cpu_seconds = children_cpu_seconds() - cpu_before
        if not done.exists() and errors.stat().st_size:
            print(f"  wrk: {errors.read_text().strip()[-500:]}", flush=True)
    answered = {answer.tap.id for answer in result.answers}
    result.unanswered = [tap for tap in taps if tap.id not in answered]
    return result
