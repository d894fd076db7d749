"""Arbitrary JSON (and bytes that are not JSON) posted to a running ``uncollapse serve``: the answer
is never a 5xx, never repeats a long input, and the keep-alive connection answers ``/health``
afterwards. ``make test`` posts 150 bodies; ``make fuzz`` (``-m fuzz``) posts 1,500."""

from __future__ import annotations

import http.client
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_runs import FAST, ServerProcess, invoke

MARK = "Q" * 64  # a long string no answer may repeat

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(width=32),
    st.integers(min_value=-(10 ** 500), max_value=10 ** 500), st.sampled_from([3e38, -3.4e38,
                                                                               1e-45, 0.0]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20), st.just(MARK))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=10), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=60)


def vectors(dim: int = 8):
    """Context-shaped arrays that sometimes have the model's shape, with hostile numbers."""
    row = st.lists(numbers, min_size=dim - 1, max_size=dim + 1)
    return st.one_of(st.lists(row, min_size=0, max_size=4),
                     st.lists(st.lists(row, min_size=1, max_size=4), min_size=1, max_size=3))


bodies = st.one_of(
    values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"context": st.one_of(vectors(), values)},
                          optional={"output": st.one_of(st.sampled_from(["decoder", "cosine"]),
                                                        values)}
                          ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    vectors().map(lambda v: json.dumps({"context": v}).encode()[:-1]),  # cut short
)


@pytest.fixture(scope="module")
def server(run_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("serve-fuzz") / "lvm"
    result = invoke("train", "lvm", "--sequences", run_data["sequences"], "--steps", 2,
                    "--batch-size", 16, "--layers", 1, "--out", run, *FAST)
    assert result.exit_code == 0, result.output
    process = ServerProcess(run)
    yield process
    assert process.stop() == 130
    assert "Traceback" not in process.output, process.output


def check(server, connection: http.client.HTTPConnection, body: bytes) -> None:
    connection.request("POST", "/predict", body=body,
                       headers={"content-type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    assert response.status < 500, (response.status, body[:200], answer[:300])
    assert MARK.encode() not in answer
    if response.status == 200:
        vectors = json.loads(answer)["vectors"]
        flat = vectors if isinstance(vectors[0], float) else sum(vectors, [])
        assert all(math.isfinite(v) for v in flat)
    sock = connection.sock
    connection.request("GET", "/health")
    health = connection.getresponse()
    assert health.status == 200 and json.loads(health.read())["dim"] == 8
    assert connection.sock is sock  # still the same keep-alive connection


def run_examples(server, examples: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(bodies)
    def posted(body):
        check(server, connection, body)

    try:
        posted()
    finally:
        connection.close()


def test_no_body_gets_a_5xx_or_breaks_the_connection(server):
    run_examples(server, 150)


@pytest.mark.fuzz
def test_no_body_gets_a_5xx_or_breaks_the_connection_long(server):
    run_examples(server, 1500)
