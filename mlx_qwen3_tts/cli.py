"""`mlx-qwen3-tts`: speak text with any Qwen3-TTS checkpoint from the command line.

    mlx-qwen3-tts --text "Hello there." --out hello.wav
    echo "Hello there." | mlx-qwen3-tts --speaker ryan --stream --play

A thin layer over the public API: every mode runs `Qwen3TTS.stream_generate` (`stream_dialogue`
with `--script`), whose chunks drive the progress line and, with `--stream`, are written (and
played) as they arrive. `[INFO]` lines, the progress line and errors go to standard error;
standard output carries only the listings.
Exit status: 0 done, 1 the library failed (bad checkpoint or audio), 2 bad arguments.
"""

import argparse
import functools
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import mlx.core as mx
import numpy as np
import soundfile as sf

from . import (
    AudioChunk,
    AudioError,
    Language,
    Qwen3TTS,
    Qwen3TTSError,
    Qwen3TTSWarning,
    SynthesisError,
    Timeline,
    UnsupportedLanguageError,
    VoicePrompt,
    __version__,
    can_write,
    check_voice_name,
    is_voice_path,
    list_voices,
    new_seed,
    parse_script,
    voice_path,
)
from .loading import DTYPES, load

PROG = "mlx-qwen3-tts"
DEFAULT_MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
DEFAULT_OUT = "output.wav"
# Library arguments the flags do not spell as `--` + the name with dashes.
FLAG_NAMES = {"path_or_repo": "--model", "runaway_guard": "--no-runaway-guard"}
# Output suffix -> (soundfile format, subtype).
FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
           ".mp3": ("MP3", "MPEG_LAYER_III"), ".opus": ("OGG", "OPUS")}


class UsageError(Exception):
    """Arguments that cannot work together; reported in one line, exit status 2."""


class OutputError(Exception):
    """The output file could not be written (disk full, a path the checks could not foresee);
    reported in one line, exit status 1."""


def flag(name: str) -> str:
    """The flag of a library argument, for messages: `ref_text` -> `--ref-text`."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


@functools.cache
def _argument_names() -> frozenset[str]:
    return frozenset(action.dest for action in setup_arg_parser()._actions) | set(FLAG_NAMES)


def _shown(name: str) -> str:
    # A library argument as its flag; anything else (a config file's `hidden_size`) as itself.
    return flag(name) if name in _argument_names() else repr(name)


def _message(error: Qwen3TTSError | Qwen3TTSWarning) -> str:
    return " ".join(error.render(_shown).split())  # one line, whatever the message holds


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line instead of argparse's full usage block, which is 20 lines for this tool.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _language(value: str) -> str:
    try:
        return Language.parse(value).value
    except UnsupportedLanguageError as e:
        raise argparse.ArgumentTypeError(_message(e)) from e


def setup_arg_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Speak text with a Qwen3-TTS 12 Hz checkpoint on MLX.",
        epilog="Text comes from --text, --text-file or standard input. Exit status: 0 done, "
        "1 library error, 2 bad arguments. Subcommand: `mlx-qwen3-tts serve --model MODEL` runs an "
        "OpenAI-compatible speech server (see `mlx-qwen3-tts serve --help`).",
    )
    add = parser.add_argument
    add("--model", type=str, default=DEFAULT_MODEL,
        help=f"Checkpoint folder or Hugging Face repo id. Default: {DEFAULT_MODEL}")
    add("--dtype", type=str, default=None, choices=list(DTYPES),
        help="Talker dtype. Default: as released on a GPU, float32 on the CPU.")
    add("--device", type=str, default=None, choices=["cpu", "gpu"],
        help="MLX device. Default: MLX's default (the GPU on Apple silicon).")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", type=str, default=None, help="Text to speak.")
    text.add_argument("--text-file", type=str, default=None,
                      help="UTF-8 file holding the text to speak ('-' for standard input).")
    text.add_argument("--script", type=str, default=None,
                      help="A dialogue: a UTF-8 file of 'Name: text' lines, each name a speaker "
                      "(CustomVoice), a saved voice (Base) or a description (VoiceDesign), spoken in "
                      "turn with pauses.")
    add("--cast", action="append", default=[], metavar="NAME=VOICE",
        help="With --script: what a name stands for (a speaker, saved voice or description); repeat it.")
    add("--pause", type=float, default=0.4, help="With --script: seconds of silence between turns. "
        "Default: 0.4")
    add("--speaker", type=str, default=None,
        help="CustomVoice speaker (see --list-speakers). Default: vivian (or the first speaker).")
    add("--language", type=_language, default="auto",
        help="Language of the text: auto, " + ", ".join(Language.names()[1:]) + ". Default: auto.")
    add("--instruct", type=str, default=None,
        help="Style instruction (1.7B CustomVoice) or voice description (VoiceDesign).")
    voice = parser.add_mutually_exclusive_group()
    voice.add_argument("--ref-audio", type=str, default=None,
                       help="Base models: audio file of the voice to clone.")
    voice.add_argument("--voice", type=str, default=None,
                       help="Base models: a voice saved with --save-voice: its name, or its file (a "
                       "path ending in .safetensors or holding a /).")
    add("--ref-text", type=str, default=None,
        help="Transcript of --ref-audio (closer clone); without it only the speaker embedding is used.")
    add("--save-voice", type=str, default=None,
        help="Save the --ref-audio voice under this name (in $MLX_QWEN3_TTS_VOICES or "
        "~/.cache/mlx_qwen3_tts/voices), or to this file if it ends in .safetensors or holds a / "
        "(no text to say: save only).")
    add("--out", type=str, default=None,
        help=f"Output file; the format follows the suffix: {', '.join(FORMATS)}. "
        f"Default: {DEFAULT_OUT} (no file when --play has a live player).")
    add("--stream", action="store_true", help="Write (and with --play, play) audio as it is generated.")
    add("--play", action="store_true",
        help="Play the audio (sounddevice if installed, else ffplay / aplay / macOS afplay).")
    add("--seed", type=int, default=None, help="Random seed. Default: a fresh one, printed at the end.")
    add("--temperature", type=float, default=None,
        help="Sampling temperature (0 = greedy). Default: the model's.")
    add("--top-k", type=int, default=None, help="Top-k sampling. Default: the model's.")
    add("--top-p", type=float, default=None, help="Top-p sampling. Default: the model's.")
    add("--repetition-penalty", type=float, default=None, help="Repetition penalty. Default: the model's.")
    add("--max-frames", type=int, default=None,
        help="Most frames for the whole text, split pieces included (12.5 per second of audio). "
        "Default: no cap but the model's own limit per piece.")
    add("--speed", type=float, default=1.0,
        help="Speaking rate, 0.5 (slower) to 2.0 (faster); the pitch stays. Default: 1.0")
    add("--no-runaway-guard", dest="runaway_guard", action="store_false",
        help="Let generation that never stops run to --max-frames instead of ending it.")
    add("--list-speakers", action="store_true", help="Print the checkpoint's speakers and exit.")
    add("--list-languages", action="store_true", help="Print the checkpoint's languages and exit.")
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument("--quiet", action="store_true", help="Print errors and warnings only.")
    chatter.add_argument("--verbose", action="store_true",
                         help="Print progress lines when not on a terminal, and tracebacks on errors.")
    add("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class _Log:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            print(f"[INFO] {message}", file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        print(f"[WARNING] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- arguments


def _check_device(name: str | None) -> None:
    if name == "gpu" and not mx.is_available(mx.gpu):
        raise UsageError(
            "--device gpu: this MLX build has no GPU backend (Metal or CUDA); use --device cpu."
        )


def _check_file(flag: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"{flag} {path}: no such file.")


def _check_out(path: str) -> None:
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"--out {path}: unknown audio format {out.suffix!r}; use one of {', '.join(FORMATS)}."
        )
    if not can_write(*FORMATS[suffix]):
        raise UsageError(f"--out {path}: this libsndfile ({sf.__libsndfile_version__}) cannot write "
                         f"{suffix}; use .wav, or install soundfile's wheel (pip install -U soundfile).")
    if not out.parent.is_dir():
        raise UsageError(f"--out {path}: folder {out.parent} does not exist.")
    # Found before the model loads and the text is spoken, not when the audio is written.
    if out.is_dir():
        raise UsageError(f"--out {path} is a folder; name a file (in it, say).")
    if not os.access(out if out.exists() else out.parent, os.W_OK):
        raise UsageError(f"--out {path}: {'the file' if out.exists() else 'its folder'} is not writable.")


def _check_script_args(args: argparse.Namespace) -> None:
    if args.script is None:
        if args.cast:
            raise UsageError("--cast maps the names of a --script; pass --script too.")
        return
    for flag_name in ("speaker", "ref_audio", "ref_text", "voice", "save_voice"):
        if getattr(args, flag_name) is not None:
            raise UsageError(f"{flag(flag_name)} does not go with --script: the script names its speakers "
                             "(map a name to a voice with --cast NAME=VOICE).")
    _check_file("--script", args.script)
    for item in args.cast:
        if "=" not in item or not all(part.strip() for part in item.split("=", 1)):
            raise UsageError(f"--cast {item}: expected NAME=VOICE.")


def _check_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before the (slow) model load."""
    _check_script_args(args)
    if args.ref_text is not None and args.ref_audio is None:
        raise UsageError("--ref-text is the transcript of --ref-audio; pass --ref-audio too.")
    if args.save_voice is not None and args.ref_audio is None:
        raise UsageError("--save-voice saves the voice of --ref-audio; pass --ref-audio too.")
    if args.speaker is not None and (args.ref_audio or args.voice):
        raise UsageError(
            "--speaker picks a CustomVoice speaker, --ref-audio / --voice clone a voice: pick one."
        )
    _check_file("--ref-audio", args.ref_audio)
    if args.voice is not None:
        if is_voice_path(args.voice):
            _check_file("--voice", args.voice)
        else:
            _check_voice_name("--voice", args.voice)
            _check_saved_voice(args.voice)
    _check_file("--text-file", None if args.text_file == "-" else args.text_file)
    if args.out is not None:
        _check_out(args.out)
    if args.save_voice is not None:
        if is_voice_path(args.save_voice):
            _check_output(args)
        else:
            _check_voice_name("--save-voice", args.save_voice)
    _check_outputs_are_not_inputs(args)
    if args.save_voice is not None:
        _check_replaceable(args.save_voice)


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve() or os.path.samefile(a, b)
    except OSError:  # the output does not exist yet
        return False


def _check_outputs_are_not_inputs(args: argparse.Namespace) -> None:
    """Writing the output would destroy an input (a recording passed as --out, say)."""
    def voice_file(value: str | None) -> str | None:  # a saved voice's name is no file here
        return value if value and is_voice_path(value) else None

    text_file = args.text_file if args.text_file != "-" else None
    inputs = {"--ref-audio": args.ref_audio, "--text-file": text_file, "--script": args.script,
              "--voice": voice_file(args.voice)}
    outputs = {"--out": args.out or DEFAULT_OUT, "--save-voice": voice_file(args.save_voice)}
    for out_flag, out in outputs.items():
        for in_flag, source in inputs.items():
            if out is not None and source is not None and _same_file(out, source):
                raise UsageError(f"{out_flag} {out} is the {in_flag} file: writing it would destroy "
                                 "the input; choose another output file.")
    voice_out = outputs["--save-voice"]
    if voice_out is not None and _same_file(voice_out, outputs["--out"]):
        raise UsageError(f"--save-voice {voice_out} is also the --out file: the audio would overwrite "
                         "the saved voice; choose two files.")


def _check_voice_name(flag_name: str, value: str) -> None:
    try:
        check_voice_name(value)
    except AudioError as e:
        raise UsageError(f"{flag_name}: {_message(e)}") from e


def _check_saved_voice(name: str) -> None:
    path = voice_path(name)
    if not path.exists():
        saved = ", ".join(list_voices()) or "none"
        raise UsageError(f"--voice {name}: no saved voice of that name in {path.parent} (saved: {saved}); "
                         "save one with --ref-audio FILE --save-voice NAME, or give a voice file's path.")


def _saved_voice_file(value: str) -> Path:
    """The file `--save-voice VALUE` writes: the path, or the name's file in the voices folder."""
    return Path(value) if is_voice_path(value) else voice_path(value)


def _check_replaceable(value: str) -> None:
    """--save-voice may replace a saved voice (a warning says so when it does), never another
    file: `--save-voice notes.txt` or `model.safetensors` would destroy it."""
    path = _saved_voice_file(value)
    if not path.exists() and not path.is_symlink():
        return
    try:
        VoicePrompt.load(path)
    except AudioError as e:
        raise UsageError(f"--save-voice {value}: {path} exists and is not a voice saved by "
                         "mlx_qwen3_tts; writing would destroy it: choose another name, or remove it "
                         "first.") from e


def _check_output(args: argparse.Namespace) -> None:
    folder = Path(args.save_voice).parent
    if not folder.is_dir():
        raise UsageError(f"--save-voice {args.save_voice}: folder {folder} does not exist.")


def _read_text(args: argparse.Namespace) -> str:
    if args.text is not None:
        return args.text
    for flag_name, path in (("--text-file", args.text_file), ("--script", args.script)):
        if path not in (None, "-"):
            try:  # "utf-8-sig": a byte-order mark (Notepad's) would be spoken, or start a name
                return Path(path).read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"{flag_name} {path}: {e}") from e
    if args.text_file == "-" or not sys.stdin.isatty():
        return sys.stdin.read().removeprefix("\ufeff")
    return ""


def _voice_kwargs(tts: Qwen3TTS, args: argparse.Namespace, log: _Log) -> dict[str, Any]:
    """Speaker, instruction and cloned voice arguments of `generate`; saves `--save-voice`."""
    kwargs: dict[str, Any] = {"language": args.language, "instruct": args.instruct}
    if args.script is not None:
        return kwargs  # the script names each turn's voice
    if args.save_voice is not None:
        target = _saved_voice_file(args.save_voice)
        if target.exists():  # a saved voice: `_check_replaceable` refused anything else
            log.warning(f"--save-voice {args.save_voice}: replacing the voice saved in {target}")
        prompt = tts.create_voice_prompt(args.ref_audio, args.ref_text)
        again = prompt.save_to(args.save_voice)
        where = "to" if is_voice_path(args.save_voice) else "as"
        log.info(f"Saved voice prompt {where} {args.save_voice} (reuse it with --voice {again})")
        kwargs["voice"] = prompt
    elif args.ref_audio is not None:
        kwargs.update(ref_audio=args.ref_audio, ref_text=args.ref_text)
    elif args.voice is not None:
        kwargs["voice"] = args.voice
    elif args.speaker is not None:
        kwargs["speaker"] = args.speaker
    elif tts.capabilities.default_speaker is not None:
        speaker = tts.capabilities.default_speaker
        log.info(f"No --speaker given: using {speaker} (others: see --list-speakers)")
        kwargs["speaker"] = speaker
    return kwargs


# --------------------------------------------------------------------------- output


class _AudioFile:
    """An output file written chunk by chunk (`--stream`) or once; opened at the first write."""

    def __init__(self, path: str, sample_rate: int):
        self.path = path
        self.sample_rate = sample_rate
        self.format, self.subtype = FORMATS[Path(path).suffix.lower()]
        self.file: sf.SoundFile | None = None
        self.closed = False

    @contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except (sf.SoundFileError, OSError) as e:
            raise OutputError(f"cannot write --out {self.path}: {' '.join(str(e).split())}") from e

    def write(self, audio: np.ndarray) -> None:
        with self._writing():
            if self.file is None:
                self.file = sf.SoundFile(self.path, "w", self.sample_rate, 1, self.subtype,
                                         format=self.format)
            # Random or overdriven models can exceed [-1, 1]; integer PCM would wrap around.
            self.file.write(np.clip(audio, -1.0, 1.0))
            self.file.flush()  # the header too: the file is playable while it grows

    def close(self) -> None:
        if self.closed:
            return
        if self.file is None:
            self.write(np.zeros(0, np.float32))
        self.closed = True
        with self._writing():
            self.file.close()


class _Player:
    """Plays float32 chunks without blocking generation: a thread feeds the audio device."""

    def __init__(self, write: Callable[[np.ndarray], None], finish: Callable[[], None]):
        self._write, self._finish = write, finish
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while (block := self._queue.get()) is not None:
            try:
                self._write(block)
            except OSError:
                return  # the player went away (closed window, Ctrl-C); keep generating
        self._finish()

    def play(self, audio: np.ndarray) -> None:
        self._queue.put(np.ascontiguousarray(audio, dtype=np.float32))

    def close(self) -> None:
        """Wait until everything queued has been played."""
        self._queue.put(None)
        self._thread.join()


def _sounddevice_player(sample_rate: int) -> _Player | None:
    try:
        import sounddevice
    except (ImportError, OSError):  # not installed, or no PortAudio library
        return None
    try:
        stream = sounddevice.OutputStream(samplerate=sample_rate, channels=1, dtype="float32")
        stream.start()
    except sounddevice.PortAudioError:  # no output device: try the next player
        return None

    def finish() -> None:
        stream.stop()
        stream.close()

    return _Player(lambda block: stream.write(block[:, None]), finish)


def _pipe_player(sample_rate: int) -> _Player | None:
    commands = {
        "ffplay": ["ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet",
                   "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "-"],
        "aplay": ["aplay", "-q", "-t", "raw", "-f", "FLOAT_LE", "-r", str(sample_rate), "-c", "1"],
    }
    for name, command in commands.items():
        if shutil.which(name):
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)

            def finish(proc: subprocess.Popen = proc) -> None:
                proc.stdin.close()
                proc.wait()

            return _Player(lambda block, proc=proc: proc.stdin.write(block.astype("<f4").tobytes()), finish)
    return None


def _open_player(sample_rate: int, log: _Log) -> _Player | None:
    player = _sounddevice_player(sample_rate) or _pipe_player(sample_rate)
    if player is None and not (sys.platform == "darwin" and shutil.which("afplay")):
        log.warning("--play: no audio player found; install one with `pip install sounddevice` "
                    "(or put ffplay / aplay on PATH). The audio is only written to the file.")
    return player


def _play_file(path: str, log: _Log) -> None:
    """macOS without sounddevice: afplay once the file is complete."""
    log.info(f"Playing {path} with afplay (pip install sounddevice to play while generating)")
    subprocess.run(["afplay", path], check=False)


# --------------------------------------------------------------------------- synthesis


class _Progress:
    """The progress line on standard error: frames, audio seconds, frames/s, realtime factor."""

    def __init__(self, sample_rate: int, enabled: bool, lines: bool):
        self.sample_rate = sample_rate
        self.enabled = enabled
        self.lines = lines  # not a terminal: one line per update (only with --verbose)
        self.samples = 0
        self.first_audio: float | None = None

    def update(self, chunk: AudioChunk) -> None:
        self.samples += len(chunk.audio)
        if self.first_audio is None and len(chunk.audio):
            self.first_audio = chunk.elapsed
        if not self.enabled:
            return
        seconds = self.samples / self.sample_rate
        rate = chunk.total_frames / chunk.elapsed if chunk.elapsed else 0.0
        rtf = chunk.elapsed / seconds if seconds else float("inf")
        line = (f"{chunk.total_frames:6d} frames | {seconds:7.2f} s audio | {rate:6.1f} frames/s | "
                f"RTF {rtf:5.2f}")
        if self.lines:
            print(line, file=sys.stderr, flush=True)
        else:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and not self.lines:
            print(file=sys.stderr, flush=True)


def _synthesize(tts: Qwen3TTS, chunks: Iterator[AudioChunk], args: argparse.Namespace, log: _Log,
                seed: int | None = None) -> None:
    """Write (and play) the chunks; `seed` is the one to report, if not the final chunk's."""
    player = _open_player(tts.sample_rate, log) if args.play else None
    # Without a live player, --play still needs a file: afplay plays it, or the user does.
    out = args.out if args.out is not None or player is not None else DEFAULT_OUT
    tty = sys.stderr.isatty()
    progress = _Progress(tts.sample_rate, enabled=not args.quiet and (tty or args.verbose), lines=not tty)
    audio_file = _AudioFile(out, tts.sample_rate) if out is not None else None
    collected: list[np.ndarray] = []
    final: AudioChunk | None = None
    mx.reset_peak_memory()
    try:
        for chunk in chunks:
            progress.update(chunk)
            collected.append(chunk.audio)
            if args.stream and audio_file is not None:
                audio_file.write(chunk.audio)
            if args.stream and player is not None:
                player.play(chunk.audio)
            final = chunk
    finally:
        progress.close()
        if args.stream and audio_file is not None and audio_file.file is not None:
            audio_file.close()  # keep what was generated when interrupted
    audio = np.concatenate(collected)
    if audio_file is not None:
        if not args.stream:
            audio_file.write(audio)
        audio_file.close()
    _summary(final, len(audio) / tts.sample_rate, progress.first_audio, out, log, seed)
    if player is not None and not args.stream:
        player.play(audio)
    if player is not None:
        player.close()
    elif args.play and sys.platform == "darwin" and shutil.which("afplay"):
        _play_file(out, log)


def _summary(
    final: AudioChunk, seconds: float, first_audio: float | None, out: str | None, log: _Log,
    seed: int | None = None,
) -> None:
    elapsed = final.elapsed
    rtf = elapsed / seconds if seconds else float("inf")
    first = f"{first_audio:.2f} s" if first_audio is not None else "none"
    log.info(
        f"{seconds:.2f} s of audio ({final.total_frames} frames) in {elapsed:.2f} s | first audio after "
        f"{first} | RTF {rtf:.2f} | peak memory {mx.get_peak_memory() / 1e9:.2f} GB | "
        f"stop: {final.finish_reason} | seed {final.seed if seed is None else seed}"
    )
    if final.finish_reason == "length":
        log.info("Stopped at the frame limit (--max-frames); the end of the text may be missing.")
    if out is not None:
        log.info(f"Wrote {out}")


def _list(tts: Qwen3TTS, args: argparse.Namespace, log: _Log) -> None:
    if args.list_speakers:
        if not tts.speakers:
            log.info(f"This {tts.model_type} checkpoint has no named speakers (only CustomVoice has; "
                     "Base clones --ref-audio, VoiceDesign follows --instruct).")
        for name in tts.speakers:
            print(name)
    if args.list_languages:
        for name in tts.languages:
            print(name)


def _show_warnings(log: _Log) -> None:
    """Library warnings as one `[WARNING]` line in the command's terms; others as Python prints them."""
    python_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(message, Qwen3TTSWarning):
            log.warning(_message(message))
        else:
            python_show(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def run(args: argparse.Namespace) -> None:
    log = _Log(args.quiet)
    _show_warnings(log)
    listing = args.list_speakers or args.list_languages
    if not listing:
        _check_args(args)
    _check_device(args.device)
    text = "" if listing else _read_text(args)
    if not listing and not text.strip() and args.save_voice is None:
        raise UsageError("nothing to say: pass --text, --text-file, or pipe text on standard input.")
    start = time.perf_counter()
    log.info(f"Loading {args.model}")
    tts = load(args.model, dtype=args.dtype, device=args.device)
    seconds = time.perf_counter() - start
    log.info(f"Loaded a {tts.model_type} checkpoint in {seconds:.1f} s: {tts.compute}")
    if listing:
        _list(tts, args, log)
        return
    kwargs = _voice_kwargs(tts, args, log)
    if not text.strip():
        return  # --save-voice only
    kwargs.update(
        seed=args.seed, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, max_frames=args.max_frames,
        runaway_guard=args.runaway_guard, speed=args.speed,
    )
    if args.script is not None:
        _dialogue(tts, text, kwargs, args, log)
    else:
        _synthesize(tts, tts.stream_generate(text, **kwargs), args, log)


def _dialogue(tts: Qwen3TTS, script: str, kwargs: dict[str, Any], args: argparse.Namespace,
              log: _Log) -> None:
    """--script: every turn checked first, then spoken turn by turn; each turn's timing logged."""
    cast = dict(item.split("=", 1) for item in args.cast)
    cast = {name.strip(): voice.strip() for name, voice in cast.items()}
    timeline = Timeline(tts.sample_rate)

    def timed(chunks: Iterator[AudioChunk]) -> Iterator[AudioChunk]:
        for chunk in chunks:
            timeline.add(chunk)
            yield chunk

    seed = kwargs.pop("seed")
    seed = new_seed() if seed is None else seed  # the dialogue's, which derives each turn's
    chunks = tts.stream_dialogue(script, voices=cast, pause=args.pause, seed=seed, **kwargs)
    _synthesize(tts, timed(chunks), args, log, seed)
    for i, t in enumerate(timeline.timings(parse_script(script))):
        log.info(f"turn {i + 1} {t.speaker}: {t.start:.2f}-{t.end:.2f} s ({t.frames} frames, "
                 f"{t.finish_reason}, seed {t.seed})")


def _fail(message: str, code: int, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # `mlx-qwen3-tts serve ...`: the optional OpenAI-compatible server
        try:
            from .server import main as serve
        except ImportError as e:
            return _fail(str(e), 2, "--verbose" in argv)
        return serve(argv[1:])
    args = setup_arg_parser().parse_args(argv)
    shown = warnings.showwarning
    try:
        run(args)
    except UsageError as e:
        return _fail(str(e), 2, args.verbose)
    except OutputError as e:
        return _fail(str(e), 1, args.verbose)
    except SynthesisError as e:  # an argument the checkpoint cannot use
        return _fail(_message(e), 2, args.verbose)
    except Qwen3TTSError as e:
        return _fail(_message(e), 1, args.verbose)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
    return 0


if __name__ == "__main__":
    sys.exit(main())
