"""Dialogue in one call: a script of turns, each spoken by its own voice, joined with pauses.

    Alice: Did you hear that?
    Bob: Hear what?

Each line of a script is `Name: text` (blank lines and lines starting with `#` are skipped). A
name stands for a voice of the loaded checkpoint: a CustomVoice speaker, a Base model's saved
voice (one Base model clones any number of voices), a VoiceDesign description, or whatever
`voices` maps it to. Turn i is sampled with its own seed, derived from the call's one seed and
reported with its timing, so `generate(turn.text, seed=turn.seed, ...)` speaks that turn again.
"""

import hashlib
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import Qwen3TTSError, SynthesisError, UnknownSpeakerError
from .request import SEED_LIMIT, check_seed
from .synthesis import AudioChunk, Engine
from .voice_prompt import VoicePrompt

DEFAULT_PAUSE = 0.4  # seconds of silence between turns
MAX_PAUSE = 10.0
_LINE = re.compile(r"^\s*([^:\n]{1,64}?)\s*:\s*(.*\S)\s*$")


@dataclass(frozen=True)
class Turn:
    """One line of a script: who speaks and what (`line` counts from 1, for messages)."""

    speaker: str
    text: str
    line: int | None = None


@dataclass
class TurnTiming:
    """Where a turn sits in the dialogue's audio, and how to speak it again.

    Attributes:
        speaker, text: the turn.
        start, end: seconds from the start of the dialogue's audio.
        seed: the seed it was sampled with.
        frames: its codec frames.
        finish_reason: why it stopped ("eos", "length", "runaway").
    """

    speaker: str
    text: str
    start: float
    end: float
    seed: int
    frames: int
    finish_reason: str


@dataclass
class DialogueResult:
    """A whole dialogue: its audio and each turn's timing."""

    audio: np.ndarray
    sample_rate: int
    turns: list[TurnTiming]
    seed: int
    generation_time: float

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def parse_script(script: str) -> list[Turn]:
    """The turns of a `Name: text` script.

    Raises:
        SynthesisError: a line that is not `Name: text` (the message gives its number), or no turn.
    """
    if not isinstance(script, str):
        raise SynthesisError(f"A script must be a str, got {type(script).__name__}.", "script")
    turns = []
    # A byte-order mark (Notepad's, Excel's) would start the first speaker's name.
    for number, line in enumerate(script.removeprefix("\ufeff").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise SynthesisError(f"Line {number} of the script is not 'Name: text': {line.strip()[:60]!r}.",
                                 "script")
        turns.append(Turn(match.group(1), match.group(2), number))
    if not turns:
        raise SynthesisError("The script has no 'Name: text' line to speak.", "script")
    return turns


def turn_seed(seed: int, index: int) -> int:
    """Turn `index`'s seed: distinct per turn, far from the seed + i of a split turn's pieces."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % SEED_LIMIT


def as_turns(script: Any) -> list[Turn]:
    """A script string, or a list of `Turn`s / `(speaker, text)` pairs, as turns."""
    if isinstance(script, str):
        return parse_script(script)
    if not isinstance(script, (list, tuple)) or not script:
        raise SynthesisError("A dialogue is a 'Name: text' script or a list of (speaker, text) turns.",
                             "script")
    turns = []
    for i, turn in enumerate(script):
        if isinstance(turn, Turn):
            turns.append(turn)
        elif isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn):
            turns.append(Turn(turn[0], turn[1], i + 1))
        else:
            raise SynthesisError(f"Turn {i + 1} must be a (speaker, text) pair, got {turn!r:.60}.", "script")
    return turns


def voice_kwargs(model_type: str, name: str, voices: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `generate` arguments a speaker name stands for on this kind of checkpoint."""
    value = (voices or {}).get(name, name)
    if isinstance(value, Mapping):
        taken = sorted({"text", "seed"} & set(value))  # the turn's own: its line, the dialogue's seed
        if taken:
            raise SynthesisError(f"voices[{name!r}] sets {', '.join(taken)}, which each turn takes from "
                                 "the script and the dialogue's seed; map a name to voice arguments only.",
                                 "voices")
        return dict(value)
    if model_type == "custom_voice":
        return {"speaker": value}
    if model_type == "base":
        return {"voice": value}
    if isinstance(value, VoicePrompt):
        raise SynthesisError(f"{name!r}: a VoiceDesign model takes a description, not a saved voice.",
                             "voices")
    return {"instruct": value}  # VoiceDesign: the name is the description, unless mapped


def check_pause(pause: Any) -> float:
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 <= pause <= MAX_PAUSE:
        raise SynthesisError(f"`pause` must be 0 to {MAX_PAUSE:g} seconds, got {pause!r}.", "pause")
    return float(pause)


class Dialogue:
    """A validated dialogue: every turn's job built (and so every voice checked) before any audio.

    Runs on the model's thread (`Qwen3TTS.stream_dialogue` / `generate_dialogue`).
    """

    def __init__(self, engine: Engine, script: Any, voices: Mapping[str, Any] | None, pause: float,
                 seed: int | None, kwargs: dict[str, Any]):
        self.engine = engine
        self.turns = as_turns(script)
        if voices is not None and not isinstance(voices, Mapping):
            raise SynthesisError("`voices` maps the script's names to voices (a dict such as "
                                 f"{{'Alice': 'vivian'}}), got {type(voices).__name__}.", "voices")
        self.pause = check_pause(pause)
        self.seed = check_seed(seed)
        caps = engine.builder.caps
        self.jobs = []
        for i, turn in enumerate(self.turns):
            where = f"Line {turn.line}" if turn.line is not None else f"Turn {i + 1}"
            try:
                voice = voice_kwargs(caps.model_type, turn.speaker, voices)
                job = engine.builder.job(turn.text, seed=turn_seed(self.seed, i), **{**kwargs, **voice})
            except Qwen3TTSError as e:
                raise _at(e, where, turn.speaker) from e
            self.jobs.append(job)

    def stream(self, first_chunk_frames: int, chunk_frames: int) -> Iterator[AudioChunk]:
        """Each turn's chunks (`chunk.turn` says whose), a pause of silence between turns."""
        start = time.perf_counter()
        silence = np.zeros(round(self.pause * self.engine.sample_rate), np.float32)
        total = 0
        for i, job in enumerate(self.jobs):
            if i and silence.size:
                yield AudioChunk(silence, self.engine.sample_rate, 0, total, False,
                                 time.perf_counter() - start, turn=i - 1)
            for chunk in self.engine.stream(job, first_chunk_frames, chunk_frames):
                total += chunk.frames
                last = chunk.is_final and i == len(self.jobs) - 1
                yield AudioChunk(chunk.audio, chunk.sample_rate, chunk.frames, total, last,
                                 time.perf_counter() - start, chunk.finish_reason, chunk.seed, turn=i)


def _at(error: Qwen3TTSError, where: str, speaker: str) -> Qwen3TTSError:
    """The same error, saying which line of the script it is about."""
    # The turn's text and speaker come from the script, not from arguments of their own: a front
    # end must not show them as its flags (`text` as --text).
    said = error.render(lambda name: TURN_WORDS.get(name))
    if isinstance(error, UnknownSpeakerError) or error.param in ("speaker", "voice", "instruct"):
        message = f"{where}: speaker {speaker!r}: {said}"
    else:
        message = f"{where}: {said}"
    return type(error)(message, error.param)


TURN_WORDS = {"text": "the text", "speaker": "a speaker"}


class Timeline:
    """Where each turn of a streamed dialogue lies in its audio, read from its chunks."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.at = 0  # samples so far
        self.spans: dict[int, list[int]] = {}
        self.ends: dict[int, AudioChunk] = {}  # each turn's last chunk

    def add(self, chunk: AudioChunk) -> None:
        if chunk.frames or chunk.seed is not None:  # a turn's audio (not the pause after it)
            span = self.spans.setdefault(chunk.turn, [self.at, self.at])
            span[1] = self.at + len(chunk.audio)
        if chunk.finish_reason is not None:
            self.ends[chunk.turn] = chunk
        self.at += len(chunk.audio)

    def timings(self, turns: list[Turn]) -> list[TurnTiming]:
        out, before = [], 0
        for i, turn in enumerate(turns):
            first, last = self.spans.get(i, [self.at, self.at])
            end = self.ends.get(i)
            total = end.total_frames if end is not None else before
            out.append(TurnTiming(turn.speaker, turn.text, first / self.sample_rate, last / self.sample_rate,
                                  end.seed if end is not None else -1, total - before,
                                  end.finish_reason if end is not None else "length"))
            before = total
        return out


def collect(dialogue: Dialogue, chunks: Iterator[AudioChunk], started: float) -> DialogueResult:
    """The whole dialogue from its stream, with each turn's start and end."""
    timeline = Timeline(dialogue.engine.sample_rate)
    audio = []
    for chunk in chunks:
        timeline.add(chunk)
        audio.append(chunk.audio)
    return DialogueResult(np.concatenate(audio) if audio else np.zeros(0, np.float32),
                          dialogue.engine.sample_rate, timeline.timings(dialogue.turns), dialogue.seed,
                          time.perf_counter() - started)
