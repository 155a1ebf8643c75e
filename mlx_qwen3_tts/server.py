"""An OpenAI-compatible local speech server: `mlx-qwen3-tts serve --model PATH_OR_REPO`.

    POST /v1/audio/speech   OpenAI's speech request; audio streamed as it is generated
    GET  /v1/models         the one model served (and /v1/models/{id})
    GET  /v1/voices         the voice names `voice` accepts
    GET  /health            readiness and queue depth

One model is kept in memory and requests are synthesized together in one continuous batch,
driven by one scheduler thread (MLX generation must stay off the event loop): up to `max_batch`
stream at once, joining and leaving the running frame loop at frame boundaries, and at most
`max_queue` more wait; beyond that they are answered 429. Errors are OpenAI's JSON shape,
`{"error": {"message", "type", "param", "code"}}`, and name no local paths.

No web page can drive the server: POST bodies must be `application/json` (which needs a CORS
preflight, and no CORS header is ever sent), and by default only loopback `Host` names are
answered (against DNS rebinding; `allowed_hosts` adds names).

pcm, wav, mp3 and opus are encoded and sent chunk by chunk as `stream_generate` yields them (wav
with an 'unknown length' header, mp3 at a constant bit rate, opus in Ogg pages of 80 ms); flac is
sent whole when done, because its header must hold the length. `stream_format="sse"` wraps the
same bytes in OpenAI's events.

Needs the `server` extra: pip install 'mlx-qwen3-tts[server]'.
"""

import argparse
import asyncio
import base64
import concurrent.futures
import hmac
import io
import ipaddress
import json
import logging
import queue
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from . import (
    AudioError,
    Qwen3TTS,
    Qwen3TTSError,
    UnknownSpeakerError,
    VoicePrompt,
    can_write,
    check_voice_name,
    list_voices,
    new_seed,
    voices_dir,
)
from .loading import DTYPES, load

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send
except ImportError as e:  # the optional `server` extra is not installed
    raise ImportError(
        "The speech server needs the server extra: pip install 'mlx-qwen3-tts[server]'"
    ) from e

log = logging.getLogger("mlx_qwen3_tts.server")

# OpenAI's built-in voice and model names, accepted so existing clients work unchanged.
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova",
                 "onyx", "sage", "shimmer", "verse")
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
PLACEHOLDER_VOICE = "default"
MAX_INPUT_CHARS = 4096  # OpenAI's limit
MAX_QUEUE = 32
# Requests streaming at once in one batch: a frame reads the weights once for all of them, so
# rows cost little more than one until compute catches up with memory bandwidth.
MAX_BATCH = 8
# The body limit: `input` at its longest, each character as JSON may write it (a character outside
# the BMP escaped as two \uXXXX units), plus room for the other fields (`instructions`, ...).
JSON_BYTES_PER_CHAR = 12
BODY_OVERHEAD = 65536
BODY_TIMEOUT = 10.0  # seconds to receive a whole request body (a slow client holds a connection)
RETRY_AFTER = 1  # seconds a client told 429 waits before trying again (the openai client honours it)
SHUTDOWN_GRACE = 5  # seconds streams in progress get to finish at shutdown; then they are cut
BACKLOG = 2048  # uvicorn's
MP3_LEVEL = 0.5  # libsndfile compression level: 80 kbit/s constant bit rate at 24 kHz mono
OGG_PAGE_MS = 80.0  # an Opus page per frame of audio: each chunk goes out as it is encoded
SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302  # sndfile.h (libsndfile 1.2.0)
FORMATS = ("mp3", "opus", "wav", "flac", "pcm")
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "wav": "audio/wav", "flac": "audio/flac",
                 "pcm": "audio/pcm"}
# Formats libsndfile encodes as the audio comes: soundfile's (format, subtype) and settings.
ENCODED = {"mp3": ("MP3", "MPEG_LAYER_III", {"compression_level": MP3_LEVEL, "bitrate_mode": "CONSTANT"}),
           "opus": ("OGG", "OPUS", {})}
LOOPBACK_NAMES = ("localhost",)  # besides loopback IP literals (127.0.0.0/8, [::1])


# ----------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered as OpenAI's JSON error object with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 error_type: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.error_type, self.headers = error_type, headers

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.body()}, status_code=self.status, headers=self.headers)


# The request field that carries each library argument (the library names its arguments in
# errors; a client sees these instead).
REQUEST_FIELDS = {"text": "input", "instruct": "instructions", "speaker": "voice", "voice": "voice",
                  "ref_audio": "voice", "ref_text": "voice", "language": "language", "seed": "seed",
                  "speed": "speed"}


def _field_name(name: str) -> str:
    return f"'{REQUEST_FIELDS[name]}'" if name in REQUEST_FIELDS else name


# An absolute (or home-relative) path, quoted as repr() writes one (spaces and all), or bare.
_QUOTED_PATH = re.compile(r"'~?/[^'\n]*'" + r'|"~?/[^"\n]*"')
_BARE_PATH = re.compile(r"""(?<![\w.:/~-])~?/[^\s'"`,;()\[\]{}<>]*""")


def _last_part(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def scrub_paths(message: str) -> str:
    """`message` with each absolute path cut to its last part, for a client's eyes.

    Library messages name the files they read (a saved voice, the checkpoint); where they lie on
    this machine (a user name under /home, a private folder) is no business of a client's.
    """
    home = str(Path.home())
    if home != "/":  # a home with spaces in it, unquoted
        message = message.replace(home + "/", "~/")
    message = _QUOTED_PATH.sub(lambda m: m[0][0] + _last_part(m[0][1:-1]) + m[0][0], message)
    return _BARE_PATH.sub(lambda m: _last_part(m[0]), message)


def _client_message(e: Qwen3TTSError) -> str:
    """A library error's message in request field names, without local paths."""
    return scrub_paths(e.render(_field_name))


def _library_error(e: Qwen3TTSError) -> ApiError:
    """A 400 for an argument the checkpoint cannot use, coded after the error class."""
    code = re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__).lower().removesuffix("_error")
    return ApiError(400, _client_message(e), REQUEST_FIELDS.get(e.param or ""), code)


# ----------------------------------------------------------------------------- audio encoding


def _pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class _PcmEncoder:
    """Raw 16-bit little-endian mono, as OpenAI's `pcm`."""

    def feed(self, audio: np.ndarray) -> bytes:
        return _pcm16(audio)

    def finish(self) -> bytes:
        return b""


class _WavEncoder(_PcmEncoder):
    """16-bit WAV whose header says 'length unknown' (0xFFFFFFFF), so it can stream."""

    def __init__(self, sample_rate: int):
        self.header = _wav_header(sample_rate)

    def feed(self, audio: np.ndarray) -> bytes:
        head, self.header = self.header, b""
        return head + _pcm16(audio)


def _wav_header(sample_rate: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", unknown))


class _StreamSink(io.RawIOBase):
    """A seekable file for libsndfile whose new bytes are taken as they are written.

    At close the MP3 encoder seeks back to fill in its info frame; rewrites of bytes already
    sent are dropped, leaving a silent frame there, which every decoder plays as 24 ms of silence.
    Only the bytes not yet taken are kept: an hour's stream holds no hour of audio.
    """

    def __init__(self):
        super().__init__()
        self.pending, self.sent, self.pos = bytearray(), 0, 0  # pending: the bytes from `sent` on

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        b = bytes(b)
        end = self.pos + len(b)
        if end > self.sent + len(self.pending):
            self.pending.extend(bytes(end - self.sent - len(self.pending)))
        start = max(self.pos, self.sent)
        if end > start:
            self.pending[start - self.sent:end - self.sent] = b[start - self.pos:]
        self.pos = end
        return len(b)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        size = self.sent + len(self.pending)
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        new = bytes(self.pending)
        self.sent += len(new)
        self.pending.clear()
        return new


class _CompressedEncoder:
    """MP3 (constant bit rate, so decoders can estimate its length) or Ogg Opus, encoded chunk
    by chunk."""

    def __init__(self, response_format: str, sample_rate: int):
        self.sink = _StreamSink()
        format_name, subtype, settings = ENCODED[response_format]
        self.file = sf.SoundFile(self.sink, "w", sample_rate, 1, subtype, format=format_name, **settings)
        if format_name == "OGG":
            _set_ogg_page_latency(self.file, OGG_PAGE_MS)

    def feed(self, audio: np.ndarray) -> bytes:
        if audio.size:
            self.file.write(audio)
        return self.sink.take()

    def finish(self) -> bytes:
        self.file.close()
        return self.sink.take()


class _FlacEncoder:
    """FLAC, sent whole at the end: its header holds the length, which soundfile needs to read it."""

    def __init__(self, sample_rate: int):
        self.sample_rate, self.parts = sample_rate, []

    def feed(self, audio: np.ndarray) -> bytes:
        self.parts.append(audio)
        return b""

    def finish(self) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, np.concatenate(self.parts or [np.zeros(0, np.float32)]), self.sample_rate,
                 format="FLAC", subtype="PCM_16")
        return buf.getvalue()


def _set_ogg_page_latency(file: sf.SoundFile, ms: float) -> None:
    """Close an Ogg page every `ms` of audio. libsndfile's default, about a second, held each
    stream's audio back that long; soundfile has no call for it, so this goes through its cffi
    handle (private names: without them, or on an older libsndfile, pages keep the default)."""
    ffi, lib, handle = getattr(sf, "_ffi", None), getattr(sf, "_snd", None), getattr(file, "_file", None)
    if ffi is not None and lib is not None and handle is not None:
        lib.sf_command(handle, SFC_SET_OGG_PAGE_LATENCY_MS, ffi.new("double *", ms), ffi.sizeof("double"))


@cache
def encodable(response_format: str) -> bool:
    """Whether this libsndfile writes `response_format` (`can_write`)."""
    if response_format not in ENCODED:
        return True  # written by this module or as FLAC, which every libsndfile writes
    format_name, subtype, _ = ENCODED[response_format]
    return can_write(format_name, subtype)


def _encoder(response_format: str, sample_rate: int):
    if response_format == "pcm":
        return _PcmEncoder()
    if response_format == "wav":
        return _WavEncoder(sample_rate)
    if response_format == "flac":
        return _FlacEncoder(sample_rate)
    return _CompressedEncoder(response_format, sample_rate)


# ----------------------------------------------------------------------------- requests


@dataclass
class SpeechRequest:
    """A validated `POST /v1/audio/speech` body (`language` and `seed` are extensions)."""

    input: str
    voice: str
    model: str | None = None
    instructions: str | None = None
    response_format: str = "mp3"
    stream_format: str = "audio"
    language: str = "auto"
    seed: int | None = None
    speed: float = 1.0


JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _shown(value: Any) -> str:
    """A JSON value for a message: scalars as JSON (cut short), arrays and objects by their type only
    (writing a deeply nested one back out would recurse as deep as it goes)."""
    if isinstance(value, (list, dict)):
        return f"an {JSON_TYPES[type(value)]}"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _field(body: dict, name: str, kind: type | tuple, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        names = " or ".join(JSON_TYPES[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
        article = "an" if names[0] in "aeiou" else "a"
        raise ApiError(400, f"'{name}' must be {article} {names}, got {_shown(value)}.", name, "invalid_type")
    return value


def _choice(body: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _field(body, name, str, default) or default
    if value not in allowed:
        raise ApiError(400, f"Unsupported {name} {value!r}; this server supports {', '.join(allowed)}.",
                       name, "unsupported_value")
    return value


def _voice_name(body: dict) -> str:
    voice = body.get("voice")
    if isinstance(voice, dict):  # OpenAI's custom voice object, {"id": "voice_1234"}
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice.strip():
        raise ApiError(400, "'voice' is required: a voice name (see GET /v1/voices).", "voice",
                       "missing_required_parameter")
    return voice.strip()


def _speed(body: dict) -> float:
    """OpenAI's `speed` (OpenAI allows 0.25-4.0; the library 0.5-2.0, pitch kept, and says so)."""
    speed = _field(body, "speed", (int, float), 1.0)
    return 1.0 if speed is None else float(speed)


def parse_speech(body: Any, max_input_chars: int) -> SpeechRequest:
    """Check a speech request body; raises `ApiError` (400) naming the bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", None, "invalid_json")
    text = _field(body, "input", str)
    if text is None or not text.strip():
        raise ApiError(400, "'input' is empty; pass the text to speak.", "input",
                       "empty" if text is not None else "missing_required_parameter")
    if len(text) > max_input_chars:
        raise ApiError(400, f"'input' is {len(text)} characters; this server accepts at most "
                       f"{max_input_chars}.", "input", "string_above_max_length")
    speed = _speed(body)
    seed = _field(body, "seed", int)
    if seed is not None and seed < 0:
        raise ApiError(400, f"seed must be a non-negative integer, got {seed}.", "seed", "invalid_value")
    return SpeechRequest(
        input=text, voice=_voice_name(body), model=_field(body, "model", str),
        instructions=_field(body, "instructions", str) or None,
        response_format=_choice(body, "response_format", FORMATS, "mp3"),
        stream_format=_choice(body, "stream_format", ("audio", "sse"), "audio"),
        language=_field(body, "language", str, "auto") or "auto", seed=seed, speed=speed,
    )


async def _read_json(request: Request, limit: int, timeout: float) -> Any:
    """The JSON body, read up to `limit` bytes (413 beyond, before parsing anything) within
    `timeout` seconds (408 after: a client that never finishes its body must not hold a connection)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        data = await asyncio.wait_for(_read_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {timeout:g} s.", None,
                       "request_timeout", headers=CLOSE) from None
    except ClientDisconnect:
        # The client left mid-body: nobody reads an answer, and it is no server error (the
        # catch-all would log a traceback per aborted upload).
        raise ApiError(400, "The client disconnected before sending its whole body.", None,
                       "client_disconnected", headers=CLOSE) from None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"The request body is not valid JSON: {e}.", None, "invalid_json") from e
    except ValueError:  # int() refuses a literal of more than 4,300 digits (sys.int_info)
        raise ApiError(400, "The request body is not valid JSON here: it holds a number with too many "
                       "digits.", None, "invalid_json") from None
    except RecursionError:  # json's parser recurses once per level of nesting
        raise ApiError(400, "The request body is not valid JSON: it is nested too deeply.", None,
                       "invalid_json") from None


async def _read_body(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for part in request.stream():
        data.extend(part)
        if len(data) > limit:
            raise _too_large(limit)
    return bytes(data)


# Sent with errors answered before the body was read to its end: the rest of it would otherwise be
# read as the next request on the connection.
CLOSE = {"connection": "close"}


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than {limit} bytes.", None, "request_too_large",
                    headers=CLOSE)


def _check_json_content_type(request: Request) -> None:
    """415 unless the body is declared `application/json` (UTF-8, JSON's only charset).

    A web page may POST `text/plain` or form bodies to any address without a CORS preflight;
    `application/json` needs one, which this server never grants, so no page can drive it.
    """
    given = request.headers.get("content-type", "")
    media, _, params = given.partition(";")
    charset = params.replace(" ", "").replace('"', "").lower()
    if media.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
        raise ApiError(415, f"The request body must be JSON sent as 'Content-Type: application/json', "
                       f"got {given[:80]!r}.", None, "unsupported_media_type")


# ----------------------------------------------------------------------------- voices


class Voices:
    """Maps a request's `voice` to `generate` arguments for the loaded checkpoint's mode.

    * CustomVoice: its speakers, case-insensitive; OpenAI's names and "default" mean the default
      speaker (`default`, else "vivian" when present, else the first speaker).
    * Base: the voices saved in `folder` (`VoicePrompt.save_as`); OpenAI's names and "default"
      mean `default` when one is set, else they are refused.
    * VoiceDesign: no named voices; `instructions` describe the voice. `voice` must be "default"
      or an OpenAI name (the client requires one); any other name is refused, not ignored, so a
      speaker name sent to the wrong model is not silently dropped.
    """

    def __init__(self, tts: Qwen3TTS, default: str | None = None, folder: str | Path | None = None):
        self.caps = tts.capabilities
        self.mode = self.caps.model_type
        self.speakers = list(self.caps.speakers)
        self.folder = Path(folder) if folder is not None else voices_dir()
        self.default = self._default(default)

    def _default(self, default: str | None) -> str | None:
        if self.mode == "custom_voice":
            name = default or self.caps.default_speaker
            if name.lower() not in self.speakers:
                raise UnknownSpeakerError(f"Default voice {name!r} is not a speaker of this model. "
                                          f"Speakers: {', '.join(self.speakers)}.")
            return name.lower()
        if self.mode == "base" and default is not None:
            VoicePrompt.named(default, self.folder)  # fail at start-up, not on the first request
            return default
        if default is not None:
            raise UnknownSpeakerError("A VoiceDesign model has no default voice; its voice is the "
                                      "request's instructions.")
        return None

    def saved(self) -> list[str]:
        return list_voices(self.folder) if self.mode == "base" else []

    def resolve(self, name: str) -> tuple[dict[str, Any], str | None]:
        """`(generate kwargs, saved voice name)` for a request's voice; raises ApiError (400)."""
        alias = name.lower() in OPENAI_VOICES or name.lower() == PLACEHOLDER_VOICE
        if self.mode == "custom_voice":
            if name.lower() in self.speakers:
                return {"speaker": name.lower()}, None
            if alias:
                return {"speaker": self.default}, None
            raise self._unknown(name, self.speakers)
        if self.mode == "base":
            return {}, self._saved_voice(name, alias)
        if alias:
            return {}, None
        raise ApiError(400, f"Voice {name!r}: this VoiceDesign model has no named voices. Describe the "
                       "voice in 'instructions' and pass voice='default' (or any OpenAI voice name).",
                       "voice", "voice_not_found")

    def _saved_voice(self, name: str, alias: bool) -> str:
        try:
            check_voice_name(name)  # a name only: no client can make the server open a file
        except AudioError as e:
            raise ApiError(400, _client_message(e), "voice", "invalid_value") from e
        saved = self.saved()
        if name in saved:
            return name
        folded = [s for s in saved if s.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        if alias and self.default is not None:
            return self.default
        raise self._unknown(name, saved, hint=" Save voices with VoicePrompt.save_as into the server's "
                            "voices folder (--voices-dir).")

    def _unknown(self, name: str, known: list[str], hint: str = "") -> ApiError:
        listed = ", ".join(known) or "none"
        return ApiError(400, f"Unknown voice {name!r}. Voices: {listed}.{hint}", "voice", "voice_not_found")

    def listing(self) -> list[dict[str, Any]]:
        """`GET /v1/voices` entries: the real voices, then the names that stand for the default."""
        kind = "speaker" if self.mode == "custom_voice" else "audio_sample"
        real = self.speakers if self.mode == "custom_voice" else self.saved()
        entries = [{"id": v, "object": "audio.voice", "name": v, "type": kind} for v in real]
        if self.mode == "voice_design" or self.default is not None:
            for alias in (PLACEHOLDER_VOICE, *OPENAI_VOICES):
                if alias not in real:
                    entries.append({"id": alias, "object": "audio.voice", "name": alias, "type": "alias",
                                    "alias_of": self.default})
        return entries


# ----------------------------------------------------------------------------- synthesis worker


@dataclass
class _Failed:
    error: Qwen3TTSError


@dataclass
class _Done:
    input_tokens: int
    output_tokens: int


_END = object()  # the job's last item, always posted


@dataclass(eq=False)  # hashed by identity: the synthesizer keeps a set of its jobs
class _Job:
    text: str
    kwargs: dict[str, Any]
    saved_voice: str | None
    response_format: str
    post: Callable[[object], None] | None = None  # set by `Synthesizer.submit`
    future: concurrent.futures.Future | None = None  # done when the job has ended
    cancelled: threading.Event = field(default_factory=threading.Event)


class Synthesizer:
    """Synthesizes jobs in one continuous batch: up to `max_batch` stream at once, joining and
    leaving the running frame loop at frame boundaries; at most `max_queue` more wait.

    One scheduler thread drives the model's `StreamingBatch` (whose calls run on the model's own
    MLX thread): it admits waiting jobs, steps the batch one frame, encodes each job's chunks and
    posts them to the job's asyncio queue (a bytes item per chunk, then `_Done`, or `_Failed`
    for a library error), and `_END` in every case. A job whose client left is cancelled at the
    next frame, freeing its row. `pending` is only touched on the event loop, so it needs no lock.
    """

    def __init__(self, tts: Qwen3TTS, max_queue: int, voices_folder: Path, max_batch: int):
        self.tts, self.max_queue, self.voices_folder = tts, max_queue, voices_folder
        self.max_batch = max_batch
        self.pending = 0
        self.jobs: set[_Job] = set()
        self.incoming: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.batch = tts.open_batch(max_batch)
        self.running: dict[Any, _Running] = {}  # the batch's stream handle -> its job
        self.thread = threading.Thread(target=self._schedule, name="mlx-qwen3-tts-scheduler", daemon=True)
        self.thread.start()

    def full(self) -> bool:
        return self.pending >= self.max_batch + self.max_queue  # max_batch streaming, max_queue waiting

    def submit(self, job: _Job) -> tuple[asyncio.Queue, asyncio.Future]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        job.post = partial(loop.call_soon_threadsafe, items.put_nowait)
        job.future = concurrent.futures.Future()
        self.pending += 1
        self.jobs.add(job)
        future = asyncio.wrap_future(job.future)
        future.add_done_callback(partial(self._finished, job))
        self.incoming.put(job)
        return items, future

    def _finished(self, job: _Job, future: asyncio.Future) -> None:
        self.pending -= 1
        self.jobs.discard(job)
        if not future.cancelled() and future.exception() is not None:
            log.error("synthesis failed", exc_info=future.exception())

    async def close(self) -> None:
        for job in list(self.jobs):
            job.cancelled.set()
        self.incoming.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self.thread.join)

    # ------------------------------------------------------------------ the scheduler thread

    def _schedule(self) -> None:
        """Admit, step, post; until `close`. Never touches MLX itself (the batch's calls do)."""
        while True:
            try:
                if not self._take_new(block=not self.batch.active):
                    break
                self._drop_cancelled()
                if self.batch.active:
                    self._post(self.batch.step())
            except BaseException as e:  # a bug: every running job fails with it, the server goes on
                self._fail_all(e)
        self._fail_all(None)

    def _take_new(self, block: bool) -> bool:
        """Admit the jobs that came in; False once `close` asked the scheduler to stop."""
        while True:
            try:
                job = self.incoming.get(block=block)
            except queue.Empty:
                return True
            if job is None:
                return False
            block = False
            self._admit(job)

    def _admit(self, job: _Job) -> None:
        if job.cancelled.is_set():  # its client left while it waited
            self._end(job)
            return
        try:
            kwargs = dict(job.kwargs)
            if job.saved_voice is not None:
                try:
                    kwargs["voice"] = VoicePrompt.named(job.saved_voice, self.voices_folder)
                except AudioError as e:  # a broken file: the request's `voice` is what failed
                    e.param = e.param or "voice"
                    raise
            stream = self.batch.add(job.text, **kwargs)
        except Qwen3TTSError as e:
            job.post(_Failed(e))
            self._end(job)
            return
        except BaseException as e:  # a bug: this job fails with it (a 500), the others go on
            self._end(job, e)
            return
        encoder = _encoder(job.response_format, self.tts.sample_rate)
        self.running[stream] = _Running(job, encoder, len(self.tts.text_tokenizer.encode(job.text)))

    def _drop_cancelled(self) -> None:
        for stream, run in list(self.running.items()):
            if run.job.cancelled.is_set():  # the client went away: free its row now
                self.batch.cancel(stream)
                self._retire(stream)

    def _post(self, made: list) -> None:
        for stream, chunk in made:
            run = self.running.get(stream)
            if run is None:
                continue
            if isinstance(chunk, Qwen3TTSError):
                run.job.post(_Failed(chunk))
                self._retire(stream)
                continue
            run.job.post(run.encoder.feed(chunk.audio))
            if chunk.is_final:
                run.job.post(run.encoder.finish())
                run.job.post(_Done(run.input_tokens, chunk.total_frames))
                self._retire(stream)

    def _retire(self, stream: Any) -> None:
        """A stream left the batch: its job ends."""
        self._end(self.running.pop(stream).job)

    def _end(self, job: _Job, error: BaseException | None = None) -> None:
        job.post(_END)
        if error is None:
            job.future.set_result(None)
        else:
            job.future.set_exception(error)

    def _fail_all(self, error: BaseException | None) -> None:
        """End every running job (with `error`, a bug, or quietly at shutdown) and start afresh."""
        for stream, run in list(self.running.items()):
            if error is None:
                self.batch.cancel(stream)
            self._end(run.job, error)
        self.running.clear()
        if error is not None:
            self.batch = self.tts.open_batch(self.max_batch)


@dataclass
class _Running:
    """A job streaming in the batch: its encoder and what its usage reports."""

    job: _Job
    encoder: Any
    input_tokens: int


async def _first_item(request: Request, queue: asyncio.Queue, job: _Job) -> object | None:
    """The job's first item with audio (or its failure or end), or None if the client left first.

    Until then no status line is sent, so a library error is still a 400; empty chunks (an MP3
    encoder warming up, FLAC until the end) are skipped for that. A client that leaves cancels the
    job: a queued one is dropped before it starts, as nothing would read its audio.
    """
    left = asyncio.ensure_future(_disconnected(request.receive))
    get: asyncio.Future | None = None
    try:
        while True:
            get = asyncio.ensure_future(queue.get())
            await asyncio.wait({get, left}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                job.cancelled.set()
                return None
            item = get.result()
            if not (isinstance(item, bytes) and not item):
                return item
    finally:
        left.cancel()
        if get is not None:
            get.cancel()


async def _disconnected(receive: Receive) -> None:
    # The body has been read: the next message is http.disconnect, when the client goes away.
    while (await receive())["type"] != "http.disconnect":
        pass


async def _items(first: object, queue: asyncio.Queue, job: _Job, future: asyncio.Future):
    """A job's items from `first` to its end; re-raises a worker bug; cancels the job if left early."""
    try:
        item = first
        while item is not _END:
            yield item
            item = await queue.get()
        await future
    finally:
        job.cancelled.set()


async def _audio_body(items: AsyncIterator[object]) -> AsyncIterator[bytes]:
    async for item in items:
        if isinstance(item, _Failed):  # after the status line: all we can do is cut the stream
            raise item.error
        if isinstance(item, bytes) and item:
            yield item


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


async def _sse_body(items: AsyncIterator[object]) -> AsyncIterator[bytes]:
    """OpenAI's `speech.audio.delta` events (base64 audio) and a final `speech.audio.done`."""
    async for item in items:
        if isinstance(item, bytes) and item:
            yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(item).decode()})
        elif isinstance(item, _Done):
            usage = {"input_tokens": item.input_tokens, "output_tokens": item.output_tokens,
                     "total_tokens": item.input_tokens + item.output_tokens}
            yield _sse({"type": "speech.audio.done", "usage": usage})
        elif isinstance(item, _Failed):
            yield _sse({"type": "error", "error": _library_error(item.error).body()})


# ----------------------------------------------------------------------------- the app


@dataclass
class ServerConfig:
    """Server settings (see `setup_arg_parser` for each one's meaning)."""

    model_name: str
    max_input_chars: int = MAX_INPUT_CHARS
    max_queue: int = MAX_QUEUE
    max_frames: int | None = None
    chunk_frames: int = 12
    first_chunk_frames: int = 2
    api_key: str | None = None
    body_timeout: float = BODY_TIMEOUT
    max_batch: int = MAX_BATCH


def api_key_problem(key: str) -> str | None:
    """Why `key` cannot protect the server, or None. An empty key (`--api-key "$UNSET"`) would
    match a request without any Authorization header, and a Bearer header's value is read
    without surrounding whitespace, so a key with some would match no request."""
    if not key.strip():
        return "is empty (an unset variable?): give a key, or leave it out to serve without one."
    if key != key.strip():
        return "starts or ends with whitespace, which an Authorization header cannot carry."
    return None


class _Server:
    """The route handlers, over one model, its voices and its synthesizer."""

    def __init__(self, tts: Qwen3TTS, config: ServerConfig, voices: Voices):
        self.tts, self.config, self.voices = tts, config, voices
        self.synth = Synthesizer(tts, config.max_queue, voices.folder, config.max_batch)
        self.created = int(time.time())

    def _authorize(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.config.api_key.encode()):
            raise ApiError(401, "Missing or wrong API key (send 'Authorization: Bearer KEY').", None,
                           "invalid_api_key")

    def _check_model(self, name: str | None) -> None:
        # A repo id or path ending in the served name (e.g. "Qwen/<name>") means this model too.
        if name is None or name.rstrip("/").rsplit("/", 1)[-1] in (self.config.model_name, *OPENAI_MODELS):
            return
        raise ApiError(404, f"The model {name!r} does not exist here; this server speaks with "
                       f"{self.config.model_name!r} (also accepted: {', '.join(OPENAI_MODELS)}).",
                       "model", "model_not_found")

    def _job(self, req: SpeechRequest) -> _Job:
        if not encodable(req.response_format):
            raise ApiError(400, f"This server's libsndfile ({sf.__libsndfile_version__}) cannot write "
                           f"{req.response_format}; ask for wav, flac or pcm.", "response_format",
                           "unsupported_value")
        voice_kwargs, saved = self.voices.resolve(req.voice)
        kwargs = dict(voice_kwargs, language=req.language, instruct=req.instructions, speed=req.speed,
                      seed=req.seed if req.seed is not None else new_seed(),
                      chunk_frames=self.config.chunk_frames,
                      first_chunk_frames=self.config.first_chunk_frames)
        if self.config.max_frames is not None:
            kwargs["max_frames"] = self.config.max_frames
        return _Job(req.input, kwargs, saved, req.response_format)

    async def speech(self, request: Request) -> Response:
        self._authorize(request)
        _check_json_content_type(request)
        body = await _read_json(request, JSON_BYTES_PER_CHAR * self.config.max_input_chars + BODY_OVERHEAD,
                                self.config.body_timeout)
        req = parse_speech(body, self.config.max_input_chars)
        self._check_model(req.model)
        job = self._job(req)
        if self.synth.full():
            raise ApiError(429, f"The server is busy: {self.synth.pending} requests are queued "
                           f"(at most {self.config.max_queue} wait). Retry later.", None,
                           "queue_full", "rate_limit_error", {"retry-after": str(RETRY_AFTER)})
        queue, future = self.synth.submit(job)
        first = await _first_item(request, queue, job)
        if first is None:  # nobody to answer
            return Response(status_code=499)  # nginx's "client closed request"; no one receives it
        if isinstance(first, _Failed):
            raise _library_error(first.error)
        if first is _END:
            await future  # a bug in the worker: re-raised here and answered 500
            raise ApiError(500, "Synthesis ended without audio.", None, None, "server_error")
        items = _items(first, queue, job, future)
        headers = {"x-seed": str(job.kwargs["seed"])}
        if req.stream_format == "sse":
            return StreamingResponse(_sse_body(items), media_type="text/event-stream", headers=headers)
        return StreamingResponse(_audio_body(items), media_type=CONTENT_TYPES[req.response_format],
                                 headers=headers)

    def _model_entry(self) -> dict[str, Any]:
        return {"id": self.config.model_name, "object": "model", "created": self.created,
                "owned_by": "mlx-qwen3-tts", "model_type": self.tts.model_type}

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"object": "list", "data": [self._model_entry()]})

    async def model(self, request: Request) -> Response:
        self._authorize(request)
        name = request.path_params["model_id"]
        self._check_model(name)
        return JSONResponse(dict(self._model_entry(), id=name))

    async def voices_list(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"object": "list", "model": self.config.model_name,
                             "model_type": self.tts.model_type, "default_voice": self.voices.default,
                             "data": self.voices.listing()})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "pending": self.synth.pending})


async def _api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: HTTPException) -> Response:
    messages = {404: f"Unknown route {request.url.path}.",
                405: f"{request.method} is not allowed on {request.url.path}."}
    message = messages.get(exc.status_code, exc.detail)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return ApiError(exc.status_code, message, None, code).response()


async def _server_error(request: Request, exc: Exception) -> Response:
    # Only reached by bugs: every expected failure is an ApiError or a library error turned 400.
    # Starlette raises the bug again after this answer and uvicorn then closes the connection: say
    # so, or a client reusing it for its next request gets a connection reset.
    return ApiError(500, scrub_paths(f"Internal server error: {type(exc).__name__}: {exc}"), None, None,
                    "server_error", CLOSE).response()


def _is_loopback(name: str) -> bool:
    """Whether a host name or IP literal (IPv6 with or without brackets) means this machine only."""
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def _host_header_name(value: str) -> str | None:
    """The host of a `Host` header, lowercased, without its port; None if it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal: "[::1]:8000"
        name, bracket, port = value[1:].partition("]")
        name, port = f"[{name}]", port.removeprefix(":") if bracket else None
    else:
        name, _, port = value.partition(":")
    if not name or port is None or (port and not port.isdigit()):
        return None
    return name


class _HostCheck:
    """Answers only requests whose `Host` names a loopback host or one of `allowed` (else 421,
    or 400 for a missing or malformed Host).

    Against DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 is
    same-origin with this server for the browser, but its requests still say `Host: evil.example`.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]):
        self.app = app
        # Names as a Host header's: "tts.lan:8000" given means tts.lan on any port, like the others.
        self.allowed = frozenset(_host_header_name(name) or name.lower() for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = _host_header_name(host)
            if name is None or not (_is_loopback(name) or name in self.allowed):
                await _host_refused(host, name is None).response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_refused(host: str, malformed: bool) -> ApiError:
    what = "a missing or malformed Host header" if malformed else f"Host {host[:80]!r}"
    return ApiError(400 if malformed else 421, f"This server does not answer {what}: it answers "
                    "localhost, 127.0.0.1 and [::1] (with any port) and the names given with "
                    "--allowed-host.", None, "host_not_allowed")


def host_allow_list(host: str, allowed_hosts: Iterable[str]) -> list[str] | None:
    """`build_app`'s `allowed_hosts` for a server listening on `host` with `--allowed-host` names.

    Listening on loopback, or with names given, Host is checked (loopback names and the given
    ones); listening on another address without names, any Host is answered (use `--api-key`).
    """
    names = list(allowed_hosts)
    return names if names or _is_loopback(host.lower()) else None


def build_app(
    tts: Qwen3TTS,
    *,
    model_name: str | None = None,
    default_voice: str | None = None,
    voices_folder: str | Path | None = None,
    max_input_chars: int = MAX_INPUT_CHARS,
    max_queue: int = MAX_QUEUE,
    max_frames: int | None = None,
    chunk_frames: int = 12,
    first_chunk_frames: int = 2,
    api_key: str | None = None,
    allowed_hosts: Iterable[str] | None = (),
    body_timeout: float = BODY_TIMEOUT,
    max_batch: int = MAX_BATCH,
) -> Starlette:
    """The OpenAI-compatible ASGI app over a loaded model (serve it with uvicorn).

    Args:
        tts: the loaded model; the app owns its one worker thread from now on.
        model_name: the id in `GET /v1/models` and accepted as `model`. Default: the folder name.
        default_voice: CustomVoice: the speaker OpenAI's voice names stand for; Base: a saved
            voice for them. Default: "vivian" (or the first speaker) / none.
        voices_folder: where Base models find saved voices. Default: `voices_dir()`.
        max_input_chars: longest `input` accepted. Default: 4096 (OpenAI's).
        max_queue: requests that may wait for a place in the batch. Default: 32.
        max_frames: most frames per request, all pieces of a split text together (12.5 per
            second of audio). Default: no cap beyond the checkpoint's limit per piece.
        chunk_frames, first_chunk_frames: the streaming chunk sizes of `stream_generate`.
        api_key: when set, every /v1 request needs `Authorization: Bearer <api_key>`.
        allowed_hosts: the `Host` names answered besides localhost, 127.0.0.1 and [::1] (any
            port); others get 421. None answers any Host: for a server listening on a
            non-loopback address (see `host_allow_list`), which `api_key` should protect.
        body_timeout: seconds a client has to send a request body; slower ones get 408. Default: 10.
        max_batch: requests synthesized at once in one continuous batch, each streaming its own
            chunks; a finished or disconnected one frees its place at the next frame. Default: 8.

    Raises:
        UnknownSpeakerError / AudioError: `default_voice` is not a voice of this model.
    """
    if max_queue < 0 or max_input_chars < 1 or not body_timeout > 0 or max_batch < 1:
        raise ValueError("max_queue must be >= 0, max_input_chars and max_batch >= 1 and body_timeout > 0.")
    if api_key is not None and (problem := api_key_problem(api_key)):
        raise ValueError(f"api_key {problem}")
    config = ServerConfig(model_name or Path(tts.path).name, max_input_chars, max_queue, max_frames,
                          chunk_frames, first_chunk_frames, api_key, body_timeout, max_batch)
    server = _Server(tts, config, Voices(tts, default_voice, voices_folder))

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await server.synth.close()

    routes = [
        Route("/v1/audio/speech", server.speech, methods=["POST"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", server.model, methods=["GET"]),
        Route("/v1/voices", server.voices_list, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _server_error}
    middleware = [] if allowed_hosts is None else [Middleware(_HostCheck, allowed=allowed_hosts)]
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan, middleware=middleware)
    app.state.server = server
    return app


# ----------------------------------------------------------------------------- command line


EXIT_OK, EXIT_MODEL, EXIT_USAGE, EXIT_LISTEN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_STATUSES = f"""exit status:
  {EXIT_OK}    shut down cleanly (Ctrl-C or SIGTERM while serving)
  {EXIT_MODEL}    the model cannot be served (missing or corrupt checkpoint, bad --default-voice)
  {EXIT_USAGE}    bad arguments
  {EXIT_LISTEN}    cannot listen on --host:--port (address in use, unknown host, no permission);
       checked before the model loads
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C) while loading the model"""


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-qwen3-tts serve",
        description="Serve a Qwen3-TTS checkpoint with OpenAI's speech API (POST /v1/audio/speech).",
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model", type=str, required=True, help="Checkpoint folder or Hugging Face repo id.")
    add("--dtype", type=str, default=None, choices=list(DTYPES),
        help="Talker dtype. Default: as released on a GPU, float32 on the CPU.")
    add("--device", type=str, default=None, choices=["cpu", "gpu"],
        help="MLX device. Default: MLX's default (the GPU on Apple silicon).")
    add("--host", type=str, default="127.0.0.1", help="Address to listen on. Default: 127.0.0.1")
    add("--port", type=int, default=8000,
        help="Port to listen on; 0 picks a free one (printed). Default: 8000")
    add("--model-name", type=str, default=None,
        help="Model id to serve under. Default: the checkpoint's folder name.")
    add("--default-voice", type=str, default=None,
        help="CustomVoice: the speaker OpenAI voice names map to (default: vivian); Base: a saved "
        "voice for them (default: none, they are refused).")
    add("--voices-dir", type=str, default=None,
        help="Folder of saved voices for Base models. Default: $MLX_QWEN3_TTS_VOICES or "
        "~/.cache/mlx_qwen3_tts/voices")
    add("--max-input-chars", type=int, default=MAX_INPUT_CHARS,
        help=f"Longest input text accepted. Default: {MAX_INPUT_CHARS}")
    add("--max-batch", type=int, default=MAX_BATCH,
        help="Requests synthesized at once, in one batch (they join and leave it frame by frame). "
        f"Default: {MAX_BATCH}")
    add("--max-queue", type=int, default=MAX_QUEUE,
        help=f"Requests that may wait for a place in the batch; more get 429. Default: {MAX_QUEUE}")
    add("--max-frames", type=int, default=None,
        help="Most frames per request, all pieces of a split text together (12.5 per second of audio). "
        "Default: no cap beyond the checkpoint's limit per piece.")
    add("--chunk-frames", type=int, default=12, help="Frames per streamed chunk. Default: 12")
    add("--first-chunk-frames", type=int, default=2, help="Frames in the first chunk. Default: 2")
    add("--api-key", type=str, default=None,
        help="Require 'Authorization: Bearer KEY' on /v1 requests. Default: none (any client).")
    add("--allowed-host", type=str, action="append", default=[], metavar="NAME",
        help="A Host name to answer besides localhost, 127.0.0.1 and [::1] (repeatable). Listening on "
        "loopback, or when given, other Host names get 421 (against DNS rebinding). Default: none.")
    add("--log-level", type=str, default="info", choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level. Default: info")
    return parser


class ListenError(Exception):
    """The server cannot listen on the address asked for."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port` (a free port for 0), made before the model loads, so a
    port in use is reported at once, not after a load of minutes; uvicorn serves on it.

    Raises:
        ListenError: the address is in use, unknown, or not this machine's.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ListenError(f"cannot listen on {_address(host, port)}: {e.strerror or e}") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart at once
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise ListenError(f"cannot listen on {_address(host, port)}: {e.strerror or e}") from e
    return sock


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` (from `build_app`) on `host:port` (a free port for 0) in a background thread
    of this process, e.g. from a notebook or a test; yields the base URL and shuts the server
    down gracefully when the block ends.

    Raises:
        ListenError: the address cannot be listened on, or the server did not start within
            `timeout` seconds.
    """
    with listen(host, port) as sock:
        address = _address(host, sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            if not server.started:
                raise ListenError(f"the server on {address} did not start within {timeout} s")
            yield f"http://{address}"
        finally:
            server.should_exit = True
            thread.join(timeout)


def _serve(args: argparse.Namespace) -> None:
    """Listen, load, serve until Ctrl-C or SIGTERM (both a clean exit, after a graceful shutdown)."""
    with listen(args.host, args.port) as sock:
        print(f"[INFO] Loading {args.model}", file=sys.stderr, flush=True)
        tts = load(args.model, dtype=args.dtype, device=args.device)
        app = build_app(
            tts, model_name=args.model_name or Path(args.model.rstrip("/")).name,
            default_voice=args.default_voice, voices_folder=args.voices_dir,
            max_input_chars=args.max_input_chars, max_queue=args.max_queue, max_frames=args.max_frames,
            max_batch=args.max_batch,
            chunk_frames=args.chunk_frames, first_chunk_frames=args.first_chunk_frames,
            api_key=args.api_key, allowed_hosts=host_allow_list(args.host, args.allowed_host),
        )
        port = sock.getsockname()[1]
        name = app.state.server.config.model_name
        print(f"[INFO] Serving {name} ({tts.model_type}) at http://{_address(args.host, port)}/v1",
              file=sys.stderr, flush=True)
        if not _is_loopback(args.host) and args.api_key is None:
            print(f"[WARNING] Listening on {args.host} without --api-key: anyone who can reach it can "
                  "use it.", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, host=args.host, port=port, log_level=args.log_level,
                                timeout_graceful_shutdown=SHUTDOWN_GRACE)
        # uvicorn shuts down on SIGINT or SIGTERM, then raises the signal again for the handler
        # it found: SIGINT's raises KeyboardInterrupt, SIGTERM's is replaced by one that does nothing.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """`mlx-qwen3-tts serve`; its exit status (see `EXIT_STATUSES`)."""
    parser = setup_arg_parser()
    args = parser.parse_args(argv)
    if args.max_queue < 0 or min(args.max_input_chars, args.chunk_frames, args.first_chunk_frames,
                                 args.max_batch) < 1:
        parser.error("--max-queue must be >= 0; --max-input-chars, --max-batch and chunk sizes >= 1.")
    if args.max_frames is not None and args.max_frames < 1:  # else every request would be a 400
        parser.error(f"--max-frames must be >= 1, got {args.max_frames}.")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0 to 65535, got {args.port}.")
    if args.api_key is not None and (problem := api_key_problem(args.api_key)):
        parser.error(f"--api-key {problem}")
    try:
        _serve(args)
    except ListenError as e:
        print(f"mlx-qwen3-tts serve: error: {e}", file=sys.stderr, flush=True)
        return EXIT_LISTEN
    except Qwen3TTSError as e:
        print(f"mlx-qwen3-tts serve: error: {e}", file=sys.stderr, flush=True)
        return EXIT_MODEL
    except KeyboardInterrupt:  # while loading: serving ends with a graceful shutdown instead
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
