"""The OpenAI-compatible server, driven by the official `openai` client over loopback.

Every server here binds 127.0.0.1 on a free port, runs in a thread (or a subprocess for the
command line) and is shut down at the end; requests are bounded by the server's `max_frames`.
"""

import asyncio
import base64
import gc
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.client import HTTPConnection, HTTPResponse, IncompleteRead
from pathlib import Path

import mlx.core as mx
import numpy as np
import openai
import pytest
import soundfile as sf

import mlx_qwen3_tts as qt
from mlx_qwen3_tts import server  # ours: an import error must fail, never skip
from mlx_qwen3_tts.generate import FrameLoop
from mlx_qwen3_tts.server import serve_in_thread

TEXT = "hello world, this is a test."
FRAMES = 4  # the server's max_frames: random weights rarely stop by themselves
SEED = 3
SR = 24000


def make_client(url: str, **kw):
    return openai.OpenAI(base_url=url + "/v1", api_key=kw.pop("api_key", "unused"), max_retries=0,
                         timeout=60, **kw)


def speak(client, **kw):
    args = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "pcm",
            "extra_body": {"seed": SEED}}
    args.update(kw)
    return client.audio.speech.create(**args).content


def http(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None):
    """`(status, parsed JSON body)` of a raw request, errors included."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw(url: str, request: bytes, timeout: float = 10) -> tuple[int, dict]:
    """`(status, parsed JSON body)` of a request written byte for byte (no Host added, any header)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def assert_pcm_close(data: bytes, audio: np.ndarray) -> None:
    """16-bit PCM equals `audio` to a quantization step (streamed decoding may differ by ~1e-5)."""
    got = np.frombuffer(data, "<i2").astype(np.float32) / 32767
    assert got.shape == audio.shape
    np.testing.assert_allclose(got, audio, atol=2 / 32767)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def cv(checkpoint):
    return qt.load(checkpoint("tiny-0.6b", "custom_voice"), dtype="float32")


@pytest.fixture(scope="module")
def reference(cv):
    """What the library says for TEXT with speaker vivian (the default voice) and SEED."""
    return cv.generate(TEXT, speaker="vivian", seed=SEED, max_frames=FRAMES)


@pytest.fixture(scope="module")
def url(cv):
    app = server.build_app(cv, model_name="tiny-cv", max_frames=FRAMES, first_chunk_frames=1,
                           chunk_frames=1, max_input_chars=200)
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return make_client(url)


# ----------------------------------------------------------------------------- audio


@pytest.mark.parametrize("fmt", ["wav", "flac", "pcm"] + [f for f in ("mp3", "opus") if server.encodable(f)])
def test_each_format_decodes_to_the_library_audio(client, reference, fmt):
    data = speak(client, response_format=fmt)
    n = len(reference.audio)
    if fmt == "pcm":
        assert_pcm_close(data, reference.audio)
        return
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == SR and audio.ndim == 1
    assert sf.info(io.BytesIO(data)).subtype == {"wav": "PCM_16", "flac": "PCM_16", "mp3": "MPEG_LAYER_III",
                                                 "opus": "OPUS"}[fmt]
    if fmt in ("mp3", "opus"):  # mp3's encoder delay, padding and silent info frame add under 0.1 s
        assert n <= len(audio) <= n + 2400
    else:
        assert len(audio) == n
        np.testing.assert_allclose(audio, reference.audio, atol=2.5 / 32767)


def test_streaming_response_is_a_valid_wav(client, reference):
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="vivian", input=TEXT, response_format="wav", extra_body={"seed": SEED}
    ) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers["x-seed"] == str(SEED)
        data = b"".join(response.iter_bytes())
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == SR and len(audio) == len(reference.audio)
    # libsndfile ignores the byte rate and block align; players that seek by them do not. The
    # sizes are unknown while streaming (0xFFFFFFFF, as ffmpeg writes a pipe).
    riff_size, fmt = struct.unpack_from("<I", data, 4)[0], struct.unpack_from("<HHIIHH", data, 20)
    assert (data[:4], data[8:16], riff_size) == (b"RIFF", b"WAVEfmt ", 0xFFFFFFFF)
    assert fmt == (1, 1, SR, 2 * SR, 2, 16)  # PCM, mono, rate, bytes per second, block align, bits
    assert data[36:40] == b"data" and struct.unpack_from("<I", data, 40)[0] == 0xFFFFFFFF


def test_sse_deltas_then_done(client, reference):
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", stream_format="sse",
        extra_body={"seed": SEED},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) == FRAMES  # one chunk per frame here: audio is sent as it is generated
    assert events[-1]["type"] == "speech.audio.done"
    usage = events[-1]["usage"]
    assert usage["output_tokens"] == reference.frames and usage["input_tokens"] > 0
    assert_pcm_close(b"".join(base64.b64decode(d["audio"]) for d in deltas), reference.audio)


def test_voice_names(client, reference):
    """Speakers match case-insensitively; OpenAI's names and "default" mean the default speaker."""
    expected = speak(client, voice="vivian")
    assert_pcm_close(expected, reference.audio)
    for voice in ("VIVIAN", "alloy", "Echo", "default", {"id": "vivian"}):
        assert speak(client, voice=voice) == expected, voice
    assert speak(client, voice="ryan") != expected


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("change, status, param, code", [
    ({"voice": "bob"}, 400, "voice", "voice_not_found"),
    ({"input": ""}, 400, "input", "empty"),
    ({"input": "   "}, 400, "input", "empty"),
    ({"input": "?!"}, 400, "input", "empty_text"),  # the library's check, from the worker
    ({"response_format": "aac"}, 400, "response_format", "unsupported_value"),
    ({"response_format": "ogg"}, 400, "response_format", "unsupported_value"),
    ({"stream_format": "chunks"}, 400, "stream_format", "unsupported_value"),
    ({"input": "a" * 201}, 400, "input", "string_above_max_length"),
    ({"speed": 3.0}, 400, "speed", "synthesis"),  # 0.5 to 2.0 (OpenAI's range is 0.25 to 4.0)
    ({"speed": True}, 400, "speed", "invalid_type"),  # JSON true is no number (Python's bool is)
    ({"extra_body": {"seed": True}}, 400, "seed", "invalid_type"),
    ({"model": "gpt-5-tts"}, 404, "model", "model_not_found"),
    ({"instructions": "whisper"}, 400, "instructions", "instruct_unsupported"),  # 0.6B CustomVoice
    ({"extra_body": {"language": "klingon"}}, 400, "language", "unsupported_language"),
    ({"extra_body": {"seed": -1}}, 400, "seed", "invalid_value"),
])
def test_bad_requests_get_openai_json_errors(client, change, status, param, code):
    with pytest.raises(openai.APIStatusError) as info:
        speak(client, **change)
    e = info.value
    assert (e.status_code, e.param, e.code) == (status, param, code)
    assert e.type == "invalid_request_error" and e.message


def test_raw_http_errors(url):
    speech = url + "/v1/audio/speech"
    json_headers = {"Content-Type": "application/json"}
    cases = [
        (http(speech, "POST", b"{not json", json_headers), 400, "invalid_json"),
        (http(speech, "POST", b"[1, 2]", json_headers), 400, "invalid_json"),
        (http(speech, "POST", json.dumps({"input": "hi"}).encode(), json_headers), 400,
         "missing_required_parameter"),
        (http(speech, "POST", b"x" * 80_000, json_headers), 413, "request_too_large"),  # limit ~67 kB
        (http(url + "/v1/nothing"), 404, "not_found"),
        (http(speech), 405, "method_not_allowed"),
    ]
    for (status, body), want_status, want_code in cases:
        assert status == want_status and body["error"]["code"] == want_code, body
        assert set(body["error"]) == {"message", "type", "param", "code"}


def test_post_needs_a_json_content_type(url):
    """Cross-site pages may POST text/plain (or form) bodies without a CORS preflight; JSON only."""
    speech, body = url + "/v1/audio/speech", json.dumps({"input": "?!", "voice": "alloy"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                         "application/jsonx", "application/json; charset=latin-1", "text/json"):
        status, answer = http(speech, "POST", body, {"Content-Type": content_type})
        assert status == 415, (content_type, answer)
        assert answer["error"]["code"] == "unsupported_media_type" and set(answer["error"]) == {
            "message", "type", "param", "code"}
        assert "application/json" in answer["error"]["message"]
    port = url.rsplit(":", 1)[1]
    status, answer = raw(url, (f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    assert status == 415, answer  # no Content-Type at all
    for content_type in ("application/json", "Application/JSON", "application/json; charset=utf-8",
                         "application/json;charset=UTF-8"):
        status, answer = http(speech, "POST", body, {"Content-Type": content_type})
        assert (status, answer["error"]["code"]) == (400, "empty_text"), (content_type, answer)


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1", True), ("127.0.0.1:{port}", True), ("localhost:{port}", True), ("LocalHost", True),
    ("[::1]:{port}", True), ("[::1]", True), ("127.1.2.3:80", True),
    ("evil.example", False), ("evil.example:{port}", False), ("localhost.evil.example", False),
    ("127.0.0.1.nip.io:{port}", False), ("0.0.0.0:{port}", False), ("", False), ("[::1", False),
    ("tts.lan:{port}", False),
])
def test_loopback_server_answers_loopback_hosts_only(url, host, ok):
    """DNS rebinding: a page whose name now points at 127.0.0.1 still sends its own name as Host."""
    port = url.rsplit(":", 1)[1]
    # HTTP/1.1 requires a Host (uvicorn refuses a request without one); HTTP/1.0 does not.
    head = f"HTTP/1.1\r\nHost: {host.format(port=port)}" if host else "HTTP/1.0"
    for path in ("/health", "/v1/voices", "/v1/nothing"):
        status, body = raw(url, f"GET {path} {head}\r\nConnection: close\r\n\r\n".encode())
        if ok:
            assert status == (404 if path == "/v1/nothing" else 200), (host, status, body)
        else:
            assert status in (400, 421), (host, status, body)
            assert body["error"]["code"] == "host_not_allowed", body
            assert "--allowed-host" in body["error"]["message"]


def test_allowed_host_names_and_no_cors_headers(cv):
    app = server.build_app(cv, max_frames=2, allowed_hosts=["tts.lan", "Proxy.lan:8080"])
    with serve_in_thread(app) as base:
        port = base.rsplit(":", 1)[1]
        for host, want in (("tts.lan", 200), (f"TTS.lan:{port}", 200), (f"localhost:{port}", 200),
                           ("proxy.lan", 200), ("other.lan", 421)):
            assert http(base + "/health", headers={"Host": host})[0] == want, host
        preflight = urllib.request.Request(base + "/v1/audio/speech", method="OPTIONS", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(preflight, timeout=10)
        assert info.value.code == 405
        assert not any(k.lower().startswith("access-control-") for k in info.value.headers)
    # Not bound to loopback and no --allowed-host: any Host (protect it with --api-key instead).
    assert server.host_allow_list("0.0.0.0", []) is None
    assert server.host_allow_list("0.0.0.0", ["tts.lan"]) == ["tts.lan"]
    for loopback in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert server.host_allow_list(loopback, []) == []


@pytest.mark.parametrize("body", [
    b"[" * 5000 + b"]" * 5000,
    b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b', "voice": "alloy"}',
    b'{"input": "hi", "voice": ' + b'{"id": ' * 5000 + b'"alloy"' + b"}" * 5001,
])
def test_deeply_nested_json_is_a_400(url, body):
    status, answer = http(url + "/v1/audio/speech", "POST", body, {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"], answer["error"]["type"]) == (400, "invalid_json",
                                                                          "invalid_request_error"), answer


def test_a_number_past_pythons_digit_limit_is_a_400(url):
    """int() refuses more than 4,300 digits with a ValueError, which was a 500 and a traceback."""
    body = b'{"input": "hi", "voice": "alloy", "seed": ' + b"9" * 5000 + b"}"
    status, answer = http(url + "/v1/audio/speech", "POST", body, {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"]) == (400, "invalid_json")
    assert "too many digits" in answer["error"]["message"]


def test_a_client_that_leaves_mid_body_is_no_server_error():
    """starlette's ClientDisconnect escaped to the catch-all: a 500 and a logged traceback per
    aborted upload, which any client could repeat to flood the log."""
    from starlette.requests import Request

    async def leave() -> dict:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/v1/audio/speech",
             "headers": [(b"content-length", b"100")]}
    with pytest.raises(server.ApiError) as info:
        asyncio.run(server._read_json(Request(scope, leave), 1000, 5.0))
    assert (info.value.status, info.value.code) == (400, "client_disconnected")


def test_nested_field_values_are_described_not_dumped(url):
    body = b'{"input": ' + b"[" * 900 + b"]" * 900 + b', "voice": "alloy"}'  # parses; the wrong type
    status, answer = http(url + "/v1/audio/speech", "POST", body, {"Content-Type": "application/json"})
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (400, "invalid_type", "input")
    assert "[[[" not in answer["error"]["message"] and "string" in answer["error"]["message"], answer
    body = json.dumps({"input": "hi", "voice": "alloy", "seed": 1.5}).encode()
    status, answer = http(url + "/v1/audio/speech", "POST", body, {"Content-Type": "application/json"})
    assert answer["error"]["message"] == "'seed' must be an integer, got 1.5.", answer  # was "a integer"


def test_a_body_that_never_ends_times_out(cv):
    app = server.build_app(cv, max_frames=2, body_timeout=0.5)
    with serve_in_thread(app) as base:
        port = base.rsplit(":", 1)[1]
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
            start = time.monotonic()
            sock.sendall(f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                         "application/json\r\nContent-Length: 100\r\n\r\n{\"input\": ".encode())
            data = b""
            while chunk := sock.recv(65536):  # the server answers, then closes the connection
                data += chunk
            elapsed = time.monotonic() - start
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split()[1] == b"408" and b"connection: close" in head.lower(), head
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert 0.4 < elapsed < 5
        assert http(base + "/health")[0] == 200
    with pytest.raises(ValueError, match="body_timeout"):
        server.build_app(cv, body_timeout=0)


def test_a_long_mp3_stream_keeps_only_what_it_has_not_sent():
    """The encoder's file kept every byte it had sent: 36 MB for an hour of audio."""
    import tracemalloc

    encoder = server._encoder("mp3", SR)
    second = np.sin(np.arange(SR) * 0.05).astype(np.float32)
    sent = [encoder.feed(second)]
    tracemalloc.start()
    try:
        for _ in range(60):  # a minute of audio: ~600 KB of MP3
            sent.append(encoder.feed(second))
        held = tracemalloc.get_traced_memory()[0] - sum(len(b) for b in sent[1:])
    finally:
        tracemalloc.stop()
    sent.append(encoder.finish())
    assert held < 50_000, held
    audio, sr = sf.read(io.BytesIO(b"".join(sent)), dtype="float32")
    assert sr == SR and 61 * SR <= len(audio) <= 61 * SR + 2400


def test_opus_pages_go_out_with_each_chunk():
    """libsndfile's default Ogg page held about a second of audio: a stream's first second of
    opus came out only after it had all been generated."""
    encoder = server._encoder("opus", SR)
    chunk = np.sin(np.arange(2 * 1920) * 0.05).astype(np.float32)  # 2 frames, 160 ms
    sent = [encoder.feed(chunk) for _ in range(8)]
    assert all(sent), [len(b) for b in sent]
    audio, sr = sf.read(io.BytesIO(b"".join([*sent, encoder.finish()])), dtype="float32")
    assert sr == SR and len(audio) == 8 * len(chunk)


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_a_format_refused_clearly_without_libsndfile_support(client, monkeypatch, fmt):
    monkeypatch.setattr(server, "encodable", lambda response_format: response_format != fmt)
    with pytest.raises(openai.BadRequestError, match=f"cannot write {fmt}; ask for wav"):
        speak(client, response_format=fmt)
    assert speak(client, response_format="wav")


def fail_after_first_chunk(monkeypatch, error: Exception) -> None:
    """The server's batch gives each stream its real first chunk, then fails it: a library error
    is that stream's failure (the batch goes on); anything else a bug in the step."""
    real_step, first = qt.StreamingBatch.step, set()

    def step(self):
        out = []
        for stream, chunk in real_step(self):
            if id(stream) not in first:
                first.add(id(stream))
                out.append((stream, chunk))
            elif isinstance(error, qt.Qwen3TTSError):
                self.cancel(stream)
                out.append((stream, error))
            else:
                raise error
        return out

    monkeypatch.setattr(qt.StreamingBatch, "step", step)


def hold_the_model(tts, gate: threading.Event) -> None:
    """Keep the model's thread busy until `gate` is set: requests wait for it."""
    threading.Thread(target=tts.thread.run, args=(gate.wait, 30), daemon=True).start()


def post_speech(url: str, **fields) -> tuple[int, HTTPResponse]:
    host, port = url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=30)
    body = {"input": TEXT, "voice": "alloy", **fields}
    conn.request("POST", "/v1/audio/speech", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response


LATE = "the voice broke; check `instruct`"
LATE_SHOWN = "the voice broke; check 'instructions'"  # in request field names


@pytest.mark.parametrize("error", [qt.SynthesisError(LATE, "instruct"), ZeroDivisionError("a bug")])
@pytest.mark.parametrize("fmt", ["pcm", "wav"] + [f for f in ("mp3", "opus") if server.encodable(f)])
def test_an_error_after_the_status_line_cuts_the_stream(url, cv, monkeypatch, fmt, error):
    """Not a short file that looks complete: the stream ends without its last chunk, an error."""
    fail_after_first_chunk(monkeypatch, error)
    status, response = post_speech(url, response_format=fmt)
    assert status == 200
    with pytest.raises(IncompleteRead):
        response.read()
    monkeypatch.undo()
    assert speak(make_client(url))  # the worker survived


def test_an_error_before_flac_is_sent_is_a_400(url, cv, monkeypatch):
    """FLAC is sent whole at the end, so an error on the way still gets its status code."""
    fail_after_first_chunk(monkeypatch, qt.SynthesisError(LATE, "instruct"))
    status, response = post_speech(url, response_format="flac")
    error = json.loads(response.read())["error"]
    assert (status, error["param"], error["code"]) == (400, "instructions", "synthesis")
    assert error["message"] == LATE_SHOWN


def test_an_error_after_the_status_line_is_an_sse_error_event(url, cv, monkeypatch):
    fail_after_first_chunk(monkeypatch, qt.SynthesisError(LATE, "instruct"))
    status, response = post_speech(url, response_format="pcm", stream_format="sse")
    lines = response.read().decode().splitlines()
    events = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert status == 200 and [e["type"] for e in events] == ["speech.audio.delta", "error"]
    assert events[-1]["error"]["message"] == LATE_SHOWN
    assert events[-1]["error"]["param"] == "instructions"


def test_a_bug_is_a_500_json_error(client, cv, monkeypatch):
    def broken(self, text, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(qt.StreamingBatch, "add", broken)
    with pytest.raises(openai.InternalServerError) as info:
        speak(client)
    assert info.value.status_code == 500 and info.value.type == "server_error"
    assert info.value.response.headers["connection"] == "close"  # uvicorn closes it after a bug
    monkeypatch.undo()
    assert speak(client)  # the worker survived, and the client did not reuse the closed connection


# ----------------------------------------------------------------------------- listings


def test_models_and_voices(client, url, cv):
    assert [m.id for m in client.models.list().data] == ["tiny-cv"]
    assert client.models.retrieve("tts-1").id == "tts-1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("whisper-1")
    status, body = http(url + "/v1/voices")
    assert status == 200 and body["model_type"] == "custom_voice" and body["default_voice"] == "vivian"
    speakers = [v["id"] for v in body["data"] if v["type"] == "speaker"]
    aliases = {v["id"]: v["alias_of"] for v in body["data"] if v["type"] == "alias"}
    assert speakers == cv.speakers
    assert aliases["alloy"] == aliases["default"] == "vivian" and set(server.OPENAI_VOICES) <= set(aliases)


# ----------------------------------------------------------------------------- load


def test_twenty_concurrent_requests_one_model_working_set(client):
    texts = [f"request {i}, " + TEXT for i in range(20)]

    def one(i: int) -> bytes:
        return speak(client, input=texts[i], extra_body={"seed": i})

    one(0)  # warm-up: first-call allocations and the voice's prefix cache
    gc.collect()
    rss0, active0 = rss_bytes(), mx.get_active_memory()
    mx.reset_peak_memory()
    one(1)
    peak_one = mx.get_peak_memory()
    mx.reset_peak_memory()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    peak_all = mx.get_peak_memory()
    gc.collect()
    rss1, active1 = rss_bytes(), mx.get_active_memory()
    assert all(0 < len(r) <= 2 * FRAMES * 1920 and len(r) % 2 == 0 for r in results)
    # One request at a time: twenty queued requests peak like one, and nothing is left behind.
    assert peak_all <= 1.25 * peak_one + (4 << 20), (peak_all, peak_one)
    assert active1 - active0 < (8 << 20), (active0, active1)
    assert rss1 - rss0 < (100 << 20), (rss0, rss1)


def test_full_queue_answers_429(cv):
    app = server.build_app(cv, max_frames=2, max_queue=1, max_batch=1)
    synth = app.state.server.synth
    gate = threading.Event()
    with serve_in_thread(app) as base:
        client = make_client(base)
        hold_the_model(cv, gate)  # requests queue up
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(speak, client, voice="ryan") for _ in range(2)]
            deadline = time.monotonic() + 10
            while synth.pending < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            with pytest.raises(openai.RateLimitError) as info:
                speak(client)
            gate.set()
            assert all(len(w.result(timeout=60)) > 0 for w in waiting)
    assert info.value.code == "queue_full" and info.value.status_code == 429
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_client_disconnect_stops_synthesis(cv, monkeypatch):
    steps = []  # frames the loop ran
    real_step = FrameLoop.step
    monkeypatch.setattr(FrameLoop, "step", lambda self, *a, **k: steps.append(1) or real_step(self, *a, **k))
    app = server.build_app(cv, max_frames=400, first_chunk_frames=1, chunk_frames=1)
    synth = app.state.server.synth
    with serve_in_thread(app) as base:
        client = make_client(base)
        start = time.monotonic()
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm"
        ) as response:
            assert next(response.iter_bytes())
        while synth.pending and time.monotonic() - start < 20:
            time.sleep(0.05)
        assert synth.pending == 0
        # 400 frames take over 20 s here; the worker stopped at the next chunk instead. (On a fast
        # machine all 400 fit in the time bound: the frames run tell.)
        assert time.monotonic() - start < 15 and len(steps) < 100, len(steps)


def test_a_client_that_left_while_queued_is_not_synthesized(cv, monkeypatch):
    spoken = []  # requests that reached the frame loop (were prefilled)
    real_add = FrameLoop.add
    monkeypatch.setattr(FrameLoop, "add", lambda self, request, *a, **k: spoken.append(request.seed)
                        or real_add(self, request, *a, **k))
    app = server.build_app(cv, max_frames=2)
    synth = app.state.server.synth
    gate = threading.Event()
    with serve_in_thread(app) as base:
        port = int(base.rsplit(":", 1)[1])
        hold_the_model(cv, gate)  # the request waits
        body = json.dumps({"input": "left early", "voice": "alloy", "response_format": "pcm",
                           "seed": 1}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: "
                         f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            deadline = time.monotonic() + 10
            while synth.pending < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert synth.pending == 1
        deadline = time.monotonic() + 5  # the server notices the closed connection
        while not any(job.cancelled.is_set() for job in synth.jobs) and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.set()
        assert speak(make_client(base), input="stayed", extra_body={"seed": 2})
        deadline = time.monotonic() + 10
        while synth.pending and time.monotonic() < deadline:
            time.sleep(0.02)
    assert spoken == [2]


def test_api_key(cv):
    app = server.build_app(cv, max_frames=2, api_key="sekret")
    with serve_in_thread(app) as base:
        with pytest.raises(openai.AuthenticationError):
            make_client(base, api_key="wrong").models.list()
        assert make_client(base, api_key="sekret").models.list().data
        assert http(base + "/health")[0] == 200  # readiness needs no key


@pytest.mark.parametrize("key", ["", "  ", " sekret", "sekret\n"])
def test_an_empty_or_padded_api_key_is_refused_not_turned_off(cv, key, capsys):
    """`--api-key "$UNSET"` gives an empty key, which would have matched a request with no
    Authorization header at all (and skipped the warning for a non-loopback address)."""
    with pytest.raises(ValueError, match="api_key (is empty|starts or ends with whitespace)"):
        server.build_app(cv, api_key=key)
    with pytest.raises(SystemExit) as info:
        server.main(["--model", "/nonexistent/model", "--port", "0", "--api-key", key])
    assert info.value.code == 2 and "--api-key " in capsys.readouterr().err


# ----------------------------------------------------------------------------- other modes


def test_base_model_speaks_saved_voices(checkpoint, tmp_path):
    base = qt.load(checkpoint("tiny-1.7b", "base"), dtype="float32")
    hidden = base.config.talker_config.hidden_size
    rng = np.random.default_rng(0)
    qt.VoicePrompt(rng.standard_normal(hidden).astype(np.float32)).save_as("alice", tmp_path)
    app = server.build_app(base, max_frames=2, voices_folder=tmp_path, default_voice="alice")
    with serve_in_thread(app) as url:
        client = make_client(url)
        alice = speak(client, voice="alice")
        assert speak(client, voice="ALICE") == alice and speak(client, voice="nova") == alice
        with pytest.raises(openai.BadRequestError, match="Voices: alice"):
            speak(client, voice="bob")
        with pytest.raises(openai.BadRequestError) as info:
            speak(client, voice="alice", instructions="slowly")
        assert info.value.code == "instruct_unsupported"
    voices = server.Voices(base, folder=tmp_path)  # no default: OpenAI names are refused
    with pytest.raises(server.ApiError, match="Unknown voice 'alloy'"):
        voices.resolve("alloy")
    with pytest.raises(qt.AudioError):
        server.Voices(base, default="carol", folder=tmp_path)


def test_error_messages_name_no_local_paths(checkpoint, tmp_path, monkeypatch):
    base = qt.load(checkpoint("tiny-1.7b", "base"), dtype="float32")
    folder = tmp_path / "private voices"  # a space: paths are not cut at the first one
    hidden = base.config.talker_config.hidden_size
    qt.VoicePrompt(np.ones(hidden, np.float32)).save_as("alice", folder)
    from safetensors.numpy import save_file

    from mlx_qwen3_tts.voice_prompt import FORMAT

    # A voice file by its header (so it is listed) whose x-vector is broken.
    save_file({"speaker_embedding": np.ones((2, 2), np.float32)}, str(folder / "broken.safetensors"),
              metadata={"format": FORMAT})
    (folder / "junk.safetensors").write_bytes(b"not a voice file")  # not listed
    app = server.build_app(base, max_frames=2, voices_folder=folder)
    leaks = (str(tmp_path), str(base.path), "/tmp/", "/home/", "private voices")

    def message_of(**kw) -> str:
        with pytest.raises(openai.APIStatusError) as info:
            speak(client, **kw)
        return info.value.message

    with serve_in_thread(app) as url:
        client = make_client(url)
        unknown = message_of(voice="bob")  # the folder was named as where to save voices
        assert "Voices: alice, broken" in unknown
        broken = message_of(voice="broken")  # the library's message names the file it read
        assert "broken.safetensors" in broken and "speaker_embedding must be a non-empty 1-D" in broken
        with pytest.raises(openai.APIStatusError) as info:
            speak(client, voice="broken")
        assert info.value.param == "voice"  # it was null: the request's voice is what failed

        def bug(self, text, **kwargs):
            raise FileNotFoundError(2, "No such file or directory", str(base.path / "x" / "y.bin"))

        monkeypatch.setattr(qt.StreamingBatch, "add", bug)
        bugged = message_of(voice="alice")
        assert "y.bin" in bugged and "FileNotFoundError" in bugged
        for message in (unknown, broken, bugged):
            assert not any(leak in message for leak in leaks), message
    assert server.scrub_paths(f"in {Path.home()}/ab/x.txt, 'C:/y', ~/z, a/b") == "in x.txt, 'C:/y', z, a/b"
    assert server.scrub_paths("file '/a b/c.wav' (\"/it's/d\"), Qwen3TTS(path=/etc/e/).") == (
        "file 'c.wav' (\"d\"), Qwen3TTS(path=e).")


def test_voice_design_takes_instructions(checkpoint):
    design = qt.load(checkpoint("tiny-1.7b", "voice_design"), dtype="float32")
    app = server.build_app(design, max_frames=2)
    with serve_in_thread(app) as url:
        client = make_client(url)
        a = speak(client, voice="alloy", instructions="a calm, low voice")
        assert a == speak(client, voice="default", instructions="a calm, low voice")
        assert a != speak(client, voice="alloy", instructions="a bright, excited child")
        with pytest.raises(openai.BadRequestError) as info:
            speak(client, voice="vivian", instructions="a calm, low voice")
        assert info.value.param == "voice" and "instructions" in info.value.message


# ----------------------------------------------------------------------------- command line


SERVING = re.compile(r"Serving (\S+) \((\w+)\) at (http://127\.0\.0\.1:\d+)/v1")


@contextmanager
def serve_command(cmd: list[str], limit: float = 90):
    """Run a `serve` command line (with `--port 0`); yields `(proc, base URL, lines read so far)`.

    The process is killed after `limit` seconds whatever happens, so no test can hang on it.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killer = threading.Timer(limit, proc.kill)
    killer.start()
    try:
        lines = []
        for line in proc.stdout:  # ends when the process does (or is killed)
            lines.append(line)
            if match := SERVING.search(line):
                yield proc, match[3], lines
                break
        else:
            pytest.fail("the server did not start:\n" + "".join(lines))
    finally:
        killer.cancel()
        if proc.poll() is None:  # the test failed while it ran
            proc.kill()
            proc.communicate(timeout=30)


def serve_cmd(folder, *extra: str, module: str = "mlx_qwen3_tts") -> list[str]:
    entry = ["-m", module] + (["serve"] if module == "mlx_qwen3_tts" else [])
    return [sys.executable, *entry, "--model", str(folder), "--dtype", "float32", "--host", "127.0.0.1",
            "--port", "0", "--max-frames", "2", "--log-level", "warning", *extra]


def test_python_m_server_serves_and_shuts_down(checkpoint):
    folder = checkpoint("tiny-0.6b", "custom_voice")
    with serve_command(serve_cmd(folder, module="mlx_qwen3_tts.server")) as (proc, base, lines):
        data = speak(make_client(base), model=str(folder), response_format="wav")
        audio, sr = sf.read(io.BytesIO(data))
        assert sr == SR and 0 < len(audio) <= 2 * 1920
        proc.terminate()
        out = "".join(lines) + proc.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully on SIGTERM and re-raises it after; that is a clean exit here.
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert f"Serving {folder.name} (custom_voice)" in out


def one_request_then_sigint(folder) -> tuple[int, str]:
    """`mlx-qwen3-tts serve`: one streamed request, then Ctrl-C; the exit status and the output."""
    with serve_command(serve_cmd(folder, "--first-chunk-frames", "1", "--chunk-frames", "1")) as (
            proc, base, lines):
        with make_client(base).audio.speech.with_streaming_response.create(
            model="tts-1", voice="ryan", input=TEXT, response_format="pcm"
        ) as response:
            assert b"".join(response.iter_bytes())
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    return proc.returncode, "".join(lines) + out


def test_serve_exits_0_after_a_request_and_ctrl_c(checkpoint):
    """#21 case 2: this used to abort (rc 134, "terminate called without an active exception")."""
    folder = checkpoint("tiny-0.6b", "custom_voice")
    start = time.monotonic()
    with ThreadPoolExecutor(10) as pool:  # ten servers at once, each on a port of its own
        runs = list(pool.map(one_request_then_sigint, [folder] * 10))
    for rc, out in runs:
        assert rc == 0 and "Traceback" not in out and "terminate called" not in out, (rc, out)
    assert time.monotonic() - start < 60


def test_a_port_in_use_is_refused_before_the_model_loads(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = server.main(["--model", "/nonexistent/model", "--port", str(port)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert err.startswith(f"mlx-qwen3-tts serve: error: cannot listen on 127.0.0.1:{port}: ") and (
        err.count("\n") == 1), err
    assert server.main(["--model", "/no/model", "--host", "no-such-host.invalid", "--port", "0"]) == 3
    assert "cannot listen on no-such-host.invalid:0: " in capsys.readouterr().err
    assert server.main(["--model", "/nonexistent/model", "--port", "0"]) == 1  # then the model
    for bad in (["--port", "65536"], ["--max-frames", "0"]):
        with pytest.raises(SystemExit) as info:
            server.main(["--model", "/nonexistent/model", *bad])
        assert info.value.code == 2


def test_serve_loads_on_the_device_asked(monkeypatch, capsys):
    """The CLI had --device and the server did not: a Mac could not serve from the CPU."""
    asked = []

    def load(model, **kwargs):
        asked.append(kwargs)
        raise qt.ModelLoadError("stop here")

    monkeypatch.setattr(server, "load", load)
    assert server.main(["--model", "m", "--port", "0", "--device", "cpu", "--dtype", "float16"]) == 1
    assert asked == [{"dtype": "float16", "device": "cpu"}]
    with pytest.raises(SystemExit) as info:
        server.main(["--model", "m", "--device", "tpu"])
    assert info.value.code == 2


def test_serve_in_thread_refuses_a_port_in_use_and_frees_its_own():
    async def app(scope, receive, send):  # never called: no HTTP request is sent
        raise AssertionError("no request was sent")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(server.ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            with serve_in_thread(app, port=port):
                pass
    before = set(threading.enumerate())
    with serve_in_thread(app, timeout=5) as url:
        port = int(url.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(ConnectionRefusedError):  # shut down when the block ended
        socket.create_connection(("127.0.0.1", port), timeout=5)
    # Its thread ended too (the socket closing alone would not do). The threads it started, not a
    # count: another test's thread ending meanwhile made a count flaky.
    assert set(threading.enumerate()) - before == set()


def test_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as info:
        server.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for status in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {status}" in out, out
    assert "cannot listen" in out and "--allowed-host" in out


# ----------------------------------------------------------------------------- continuous batching


@pytest.fixture
def widest(monkeypatch) -> list[int]:
    """The streams running at each step of any `StreamingBatch` during the test."""
    widths: list[int] = []
    real_step = qt.StreamingBatch.step

    def step(self):
        widths.append(self.running)
        return real_step(self)

    monkeypatch.setattr(qt.StreamingBatch, "step", step)
    return widths


def test_concurrent_streams_are_batched_and_each_is_what_it_is_alone(cv, widest):
    """Four clients stream at once from one batch (rows join as they come, leave at their end);
    each gets the audio its request gives alone: voice, seed and sampling of its own."""
    frames = 24
    requests = [dict(voice="ryan", input=TEXT, seed=1),
                dict(voice="serena", input="a second voice, joining the batch.", seed=2),
                dict(voice="aiden", input="and a third one, shorter.", seed=3, speed=1.25),
                dict(voice="vivian", input=TEXT + " and then some more.", seed=4)]
    app = server.build_app(cv, max_frames=frames, max_batch=4, first_chunk_frames=2, chunk_frames=3)
    with serve_in_thread(app) as base:
        client = make_client(base)

        def one(r: dict) -> bytes:
            extra = {"seed": r["seed"]} | ({"speed": r["speed"]} if "speed" in r else {})
            return speak(client, voice=r["voice"], input=r["input"], extra_body=extra)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, requests))
    assert max(widest) >= 3  # the streams really ran together
    for r, got in zip(requests, results):
        alone = cv.generate(r["input"], speaker=r["voice"], seed=r["seed"], max_frames=frames,
                            speed=r.get("speed", 1.0))
        assert_pcm_close(got, np.clip(alone.audio, -1, 1))


def test_a_new_stream_joins_while_others_speak(cv, widest):
    """A request arriving mid-generation joins at a frame boundary and gets its solo audio; the
    running one is not disturbed."""
    app = server.build_app(cv, max_frames=60, max_batch=4, first_chunk_frames=1, chunk_frames=1)
    synth = app.state.server.synth
    with serve_in_thread(app) as base:
        client = make_client(base)
        with ThreadPoolExecutor(2) as pool:
            long_one = pool.submit(speak, client, voice="ryan", input=TEXT, extra_body={"seed": 7})
            deadline = time.monotonic() + 30
            while not synth.running and time.monotonic() < deadline:
                time.sleep(0.01)
            assert synth.running, "the first stream never started"
            late = pool.submit(speak, client, voice="sohee", input="a late arrival.",
                               extra_body={"seed": 8})
            first, second = long_one.result(timeout=120), late.result(timeout=120)
    assert max(widest) == 2  # the late one joined while the first still ran
    assert_pcm_close(first, np.clip(cv.generate(TEXT, speaker="ryan", seed=7, max_frames=60).audio, -1, 1))
    late_alone = cv.generate("a late arrival.", speaker="sohee", seed=8, max_frames=60).audio
    assert_pcm_close(second, np.clip(late_alone, -1, 1))


def test_stream_sink_drops_rewrites_of_sent_bytes():
    sink = server._StreamSink()
    sink.write(b"0123456789")
    assert sink.take() == b"0123456789"
    sink.write(b"abcd")
    assert sink.seek(0, io.SEEK_END) == 14  # the whole file's length, sent bytes included
    sink.seek(0)
    sink.write(b"XYZ")  # wholly sent: dropped, without an error
    sink.seek(8)
    sink.write(b"QRSTU")  # straddles what was sent: only its unsent part lands
    assert sink.tell() == 13
    assert sink.take() == b"STUd"


def test_encodable_checks_the_subtype(monkeypatch):
    monkeypatch.setattr(sf, "available_formats", lambda: {"WAV": "", "FLAC": "", "OGG": ""})
    monkeypatch.setattr(sf, "available_subtypes", lambda format_name=None: {"PCM_16": "", "VORBIS": ""})
    server.encodable.cache_clear()
    try:
        assert not server.encodable("opus") and not server.encodable("mp3")
        assert server.encodable("wav") and server.encodable("flac") and server.encodable("pcm")
    finally:
        server.encodable.cache_clear()


@pytest.mark.parametrize("fmt,content_type", [
    ("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("wav", "audio/wav"),
    ("flac", "audio/flac"), ("pcm", "audio/pcm"),
])
def test_each_format_has_its_content_type(client, fmt, content_type):
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt, extra_body={"seed": SEED},
    ) as response:
        assert response.headers["content-type"] == content_type
