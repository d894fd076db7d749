"""The server family: hostile request bodies posted to a running ``uncollapse serve``.

One server process per fuzz run serves a small LVM run (trained once on the corpus sequence file)
and takes every example on one keep-alive connection. An example is a body drawn from: any JSON
value (huge integers, NaN, infinity, values near float32's limit, deep nesting, long strings),
a ``{"context": ..., "output": ...}`` object with context-shaped arrays of hostile numbers,
random bytes, JSON cut short, or a body past the size limit. The invariants, checked on each
answer: never a 5xx; no answer repeats a long string of the input; a 200 carries only finite
vectors of the model's dimension (a body of the model's shape gets 200, or 422 where the
output overflows float32); the connection answers ``GET /health`` afterwards (413s close
it, as they announce); the server is still running.
"""

from __future__ import annotations

import atexit
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import strategies as st

from fuzz.invariants import Case, Outcome
from fuzz.mutations import CORPUS
from uncollapse.trainers.serve import KEEP_ALIVE_S

ROOT = Path(__file__).resolve().parents[1]
SEQUENCES = CORPUS / "sequences" / "compact.npz"
MAX_BODY = 65536
MARK = "Q" * 64
_SERVER: dict = {}

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(width=32),
    st.integers(min_value=-(10 ** 500), max_value=10 ** 500),
    st.sampled_from([3e38, -3.4e38, 3.5e38, 1e-45, 0.0, 10 ** 400]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20), st.just(MARK))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=10), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=60)


def _vectors(dim: int):
    row = st.lists(numbers, min_size=dim - 1, max_size=dim + 1)
    return st.one_of(st.lists(row, min_size=0, max_size=4),
                     st.lists(st.lists(row, min_size=1, max_size=4), min_size=1, max_size=3))


def _shaped(dim: int, length: int):
    """Contexts of the model's shape ([C, D] or [B, C, D]) of finite numbers up to float32's
    limit: answered 200, or 422 where the output overflows."""
    finite = st.one_of(st.floats(-1e3, 1e3), st.floats(-3.4e38, 3.4e38),
                       st.integers(-(2 ** 70), 2 ** 70))
    context = st.lists(st.lists(finite, min_size=dim, max_size=dim), min_size=1,
                       max_size=length)
    return st.one_of(context, st.lists(context, min_size=1, max_size=3).filter(
        lambda batch: len({len(c) for c in batch}) == 1))


def bodies(dim: int, length: int):
    return st.one_of(
        st.fixed_dictionaries({"context": _shaped(dim, length)},
                              optional={"output": st.sampled_from(["decoder", "cosine"])}
                              ).map(lambda v: ("shaped", json.dumps(v).encode())),
        values.map(lambda v: ("json value", json.dumps(v).encode())),
        st.fixed_dictionaries(
            {"context": st.one_of(_vectors(dim), values)},
            optional={"output": st.one_of(st.sampled_from(["decoder", "cosine"]), values)}
        ).map(lambda v: ("request", json.dumps(v).encode())),
        st.binary(max_size=300).map(lambda b: ("bytes", b)),
        _vectors(dim).map(lambda v: ("cut short", json.dumps({"context": v}).encode()[:-1])),
        st.integers(1, 50).map(lambda n: ("deep nesting", b'{"context": ' + b"[" * (n * 1000)
                                          + b"]" * (n * 1000) + b"}")),
        st.just(("past the limit", b'{"context": "' + b"x" * MAX_BODY + b'"}')),
    )


def server(run_in_process) -> dict:
    """The running server (started once per process, stopped at exit)."""
    if _SERVER and _SERVER["process"].poll() is None:
        return _SERVER
    folder = Path(tempfile.mkdtemp(prefix="fuzz-serve-"))
    shutil.copyfile(SEQUENCES, folder / "sequences.npz")
    run = folder / "run"
    outcome = run_in_process(Case("server", "none", "none", [
        "train", "lvm", "--sequences", str(folder / "sequences.npz"), "--batch-size", "8",
        "--layers", "1", "--hidden", "16", "--device", "cpu", "--quiet", "--steps", "2",
        "--warmup-steps", "1", "--monitor-warmup", "1000", "--out", str(run)], folder, {}))
    if outcome.exit_code != 0:
        raise RuntimeError(f"the server's run did not train: {outcome.output}")
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "uncollapse", "serve", str(run), "--port", "0", "--device", "cpu",
         "--max-body", str(MAX_BODY)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 300
    while not (found := re.search(r"listening on http://[^:]+:(\d+)",
                                  (folder / "server.log").read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start: " + (folder / "server.log").read_text())
        time.sleep(0.05)
    port = int(found.group(1))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/health")
    health = json.loads(connection.getresponse().read())
    _SERVER.update(process=process, port=port, dim=health["dim"], folder=folder,
                   length=health["context_length"],
                   connection=connection, used=time.monotonic())
    atexit.register(stop)
    return _SERVER


def stop() -> None:
    if _SERVER and _SERVER["process"].poll() is None:
        _SERVER["process"].terminate()
        _SERVER["process"].wait(timeout=60)
        shutil.rmtree(_SERVER["folder"], ignore_errors=True)


def explore(data: st.DataObject, work: Path, log, run_in_process) -> None:
    """Post one drawn body; record the answer and every broken invariant in ``log``."""
    state = server(run_in_process)
    kind, body = data.draw(bodies(state["dim"], state["length"]), label="body")
    case = Case("server", kind, "body", ["POST", "/predict", f"({len(body)} bytes)"], work, {},
                note=repr(body[:80]))
    start = time.monotonic()
    broken: list[tuple[str, str]] = []
    connection = state["connection"]
    if time.monotonic() - state["used"] > KEEP_ALIVE_S / 2:
        # the server closes a connection idle for KEEP_ALIVE_S, as it should (the server outlives
        # one test, and other targets run in between): start this example on a fresh one
        connection.close()
    status, answer = None, b""
    try:
        connection.request("POST", "/predict", body=body,
                           headers={"content-type": "application/json"})
        response = connection.getresponse()
        status, answer = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        broken.append(("the connection stays usable", f"POST failed: {type(exc).__name__}"))
    if status is not None:
        broken += check_answer(status, answer, state["dim"])
        if status == 413:  # announced "connection: close": the next request reconnects
            connection.close()
        sock = connection.sock
        try:
            connection.request("GET", "/health")
            health = connection.getresponse()
            health.read()
            if health.status != 200:
                broken.append(("the connection stays usable", f"/health {health.status}"))
            elif status != 413 and connection.sock is not sock:
                broken.append(("the connection stays usable", "the connection was reopened"))
        except (OSError, http.client.HTTPException) as exc:
            broken.append(("the connection stays usable",
                           f"/health after {status}: {type(exc).__name__}"))
    if state["process"].poll() is not None:
        broken.append(("the server keeps running", f"exit {state['process'].returncode}"))
    if broken:
        connection.close()  # start the next example on a fresh connection
    state["used"] = time.monotonic()
    log.add(case, Outcome(status, answer.decode("utf-8", "replace"),
                          seconds=time.monotonic() - start), broken)


def check_answer(status: int, answer: bytes, dim: int) -> list[tuple[str, str]]:
    found = []
    if status >= 500:
        found.append(("never a 5xx", f"{status}: {answer[:200]!r}"))
    if MARK.encode() in answer:
        found.append(("no answer repeats the input", f"{status} repeats a 64-character string"))
    if status == 200:
        try:
            vectors = json.loads(answer)["vectors"]
            rows = [vectors] if vectors and not isinstance(vectors[0], list) else vectors
            if any(len(r) != dim or not all(math.isfinite(v) for v in r) for r in rows):
                found.append(("a 200 holds finite vectors", "a wrong or non-finite vector"))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            found.append(("a 200 holds finite vectors", f"unreadable answer ({exc})"))
    return found
