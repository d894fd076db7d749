"""``uncollapse serve`` as a real process called over real HTTP: it says where it listens, logs
each request, limits bodies, keeps ``/health`` answering while large bodies arrive, never echoes
an input, never answers 500, keeps a connection usable after a bad request, checks an optional
bearer token, warns when it listens beyond this machine without one, and stops with a message."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket

import httpx
import pytest
from reliability_runs import FAST, ServerProcess, assert_clean, invoke

from uncollapse.trainers.serve import is_loopback

CONTEXT = [[float(i + j) for j in range(8)] for i in range(3)]


@pytest.fixture(scope="module")
def lvm_run(run_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("serve") / "lvm"
    result = invoke("train", "lvm", "--sequences", run_data["sequences"], "--steps", 4,
                    "--batch-size", 16, "--layers", 1, "--out", run, *FAST)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def server(lvm_run):
    process = ServerProcess(lvm_run)
    yield process
    process.stop()


def post(connection: http.client.HTTPConnection, body: bytes, path: str = "/predict",
         headers: dict | None = None) -> tuple[int, bytes, dict]:
    connection.request("POST", path, body=body,
                       headers={"content-type": "application/json", **(headers or {})})
    response = connection.getresponse()
    return response.status, response.read(), dict(response.getheaders())


def test_it_says_where_it_listens_logs_each_request_and_ctrl_c_exits_130(lvm_run):
    server = ServerProcess(lvm_run)
    assert re.search(rf"^listening on http://127\.0\.0\.1:{server.port} \(Ctrl-C to stop\)$",
                     server.output, re.M)
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.post(f"{server.url}/predict", json={"context": CONTEXT}).status_code == 200
    assert httpx.post(f"{server.url}/predict", json={"context": [[1.0]]}).status_code == 422
    assert server.stop(signal.SIGINT) == 130
    output = server.output
    for request, status in (("GET /health", 200), ("POST /predict", 200),
                            ("POST /predict", 422)):
        assert re.search(rf'127\.0\.0\.1:\d+ "{request} HTTP/1\.1" {status} ', output), output
    assert "stopped by Ctrl-C (SIGINT) after 3 request(s)" in output
    assert_clean(output)


def test_a_body_past_the_limit_is_413_before_it_is_read(server):
    big = json.dumps({"context": [[1.0] * 8] * 3, "pad": "x" * (1 << 20)}).encode()
    response = httpx.post(f"{server.url}/predict", content=big,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than 1048576 bytes" in response.json()["detail"]
    assert len(response.content) < 300

    def chunks():  # no Content-Length: the server counts while it reads
        for _ in range(40):
            yield b" " * 65536

    chunked = httpx.post(f"{server.url}/predict", content=chunks(),
                         headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert httpx.post(f"{server.url}/predict", json={"context": CONTEXT}).status_code == 200


def test_a_smaller_limit_is_a_flag(lvm_run):
    server = ServerProcess(lvm_run, "--max-body", 300)
    try:
        small = httpx.post(f"{server.url}/predict", json={"context": CONTEXT})
        assert small.status_code == 200
        large = httpx.post(f"{server.url}/predict", json={"context": [CONTEXT] * 4})
        assert large.status_code == 413 and "larger than 300 bytes" in large.text
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert "stopped by SIGTERM" in server.output


def test_health_answers_while_large_bodies_are_arriving(server):
    """Four uploads stalled part way through hold nothing up: the event loop never waits
    for a body, and parsing happens in a worker thread once a body is whole."""
    uploads = []
    body = json.dumps({"context": [[1.0] * 8] * 3, "pad": "x" * 900_000}).encode()
    for _ in range(4):
        upload = socket.create_connection(("127.0.0.1", server.port), timeout=120)
        upload.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                       b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                       + body[:len(body) // 2])
        uploads.append(upload)
    try:
        for _ in range(3):
            health = httpx.get(f"{server.url}/health", timeout=120)
            assert health.status_code == 200 and health.json()["dim"] == 8
        for upload in uploads:
            upload.sendall(body[len(body) // 2:])
            reply = upload.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    finally:
        for upload in uploads:
            upload.close()


HOSTILE = {
    "a huge integer (10**400)": b'{"context": [[1' + b"0" * 400 + b', 1, 1, 1, 1, 1, 1, 1]]}',
    "float32-overflowing output": json.dumps({"context": [[3e38] * 8] * 3}).encode(),
    "the issue's [[3e38]*64]*4": json.dumps({"context": [[3e38] * 64] * 4}).encode(),
    "1e999": b'{"context": [[1e999, 1, 1, 1, 1, 1, 1, 1]]}',
    "nested 200,000 deep": b'{"context": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "not UTF-8": b'{"context": "\xff\xfe"}',
    "not JSON": b"{context: [[1, 2]]",
    "a JSON list": b"[1, 2, 3]",
    "a string context": json.dumps({"context": "A" * 500_000}).encode(),
    "strings in the context": json.dumps({"context": [["A" * 1000] * 8] * 3}).encode(),
    "objects in the context": json.dumps({"context": [[{"a": 1}] * 8]}).encode(),
    "an unknown output": json.dumps({"context": CONTEXT, "output": "A" * 10_000}).encode(),
    "an empty body": b"",
    "an empty context": b'{"context": []}',
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_bodies_get_a_short_4xx_and_the_connection_stays_usable(server, name):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        status, body, _ = post(connection, HOSTILE[name])
        assert 400 <= status < 500, (status, body[:300])
        assert len(body) < 400 and b"AAAA" not in body  # the input is never repeated
        sock = connection.sock
        connection.request("GET", "/health")
        health = connection.getresponse()
        assert health.status == 200 and json.loads(health.read())["dim"] == 8
        assert connection.sock is sock  # the same keep-alive connection
    finally:
        connection.close()


def test_a_finite_answer_or_a_422_for_values_near_the_float32_limit(server):
    for value in (1e30, 3e38, -3.4e38):
        response = httpx.post(f"{server.url}/predict", json={"context": [[value] * 8] * 3})
        assert response.status_code in (200, 422), response.text
        if response.status_code == 200:
            assert all(abs(v) < float("inf") for v in response.json()["vectors"])


def test_a_bearer_token_guards_every_route_but_health(lvm_run):
    server = ServerProcess(lvm_run, env={"UNCOLLAPSE_SERVE_TOKEN": "s3cret-token"})
    try:
        assert "without a token" not in server.output
        predict = f"{server.url}/predict"
        refused = httpx.post(predict, json={"context": CONTEXT})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(predict, json={"context": CONTEXT},
                           headers={"authorization": "Bearer s3cret-tokeN"})
        assert wrong.status_code == 401
        right = httpx.post(predict, json={"context": CONTEXT},
                           headers={"authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and right.json()["shape"] == [8]
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert httpx.get(f"{server.url}/openapi.json").status_code == 401
    finally:
        server.stop()
    assert "s3cret-token" not in server.output


def test_listening_beyond_this_machine_without_a_token_warns(lvm_run):
    server = ServerProcess(lvm_run, "--host", "0.0.0.0")
    try:
        assert "warning: serving on 0.0.0.0 without a token" in server.output
        assert "UNCOLLAPSE_SERVE_TOKEN" in server.output
    finally:
        server.stop()


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert is_loopback("127.0.0.2") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.org")


def test_bad_tokens_and_taken_ports_are_exit_2(lvm_run):
    assert invoke("serve", lvm_run, "--token", "").exit_code == 2
    assert invoke("serve", lvm_run, "--token", "two words").exit_code == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = invoke("serve", lvm_run, "--port", taken.getsockname()[1], "--device", "cpu")
    assert result.exit_code == 2 and "cannot listen on 127.0.0.1" in result.output


def test_parsing_runs_off_the_event_loop(lvm_run, monkeypatch):
    """While one body is being parsed (held here until /health has answered), /health answers:
    parsing on the event loop would hold every other request until it ends."""
    import asyncio
    import threading

    from uncollapse.trainers import serve

    parsing, release = threading.Event(), threading.Event()
    real_parse = serve.parse_request

    def slow_parse(body):
        parsing.set()
        assert release.wait(timeout=120)
        return real_parse(body)

    monkeypatch.setattr(serve, "parse_request", slow_parse)
    app = serve.create_app(str(lvm_run), "cpu")

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            predict = asyncio.create_task(client.post("/predict", json={"context": CONTEXT}))
            while not parsing.is_set():
                await asyncio.sleep(0.01)
            health = await asyncio.wait_for(client.get("/health"), timeout=120)
            release.set()
            return health, await predict

    health, predict = asyncio.run(scenario())
    assert health.status_code == 200 and predict.status_code == 200


def test_a_client_that_asks_first_gets_the_413_without_sending_the_body(server):
    """``Expect: 100-continue`` (curl sends it for large bodies): the server answers 413 at once
    and never asks for the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as client:
        client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += client.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert b"100 Continue" not in reply
