"""Every file in tests/fixtures is one a test reads, and every fixture a table names exists.

The generation, talker and sampling fixtures are named by the tables of
tools/make_reference_fixtures.py (the tests parametrize over the same tables); the others are
read by the tests listed below. A fixture nobody reads is evidence nobody checks: use it or
remove it.
"""

import sys
from pathlib import Path

from conftest import FIXTURES

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from make_reference_fixtures import (  # noqa: E402  (the fixtures' own tables)
    CHECKPOINTS,
    EOS_CASES,
    GENERATION_CASES,
    LONG_CASES,
    checkpoint_name,
)

# Fixtures outside the tables, and the test that reads each.
OTHERS = {
    "text_tokenizer.npz": "test_text_tokenizer.py",
    "sampling_processors.npz": "test_parity_sampling.py",
    "released_ids.json": "test_id_tables.py",
    "speaker_librosa_mel.npz": "test_speaker_encoder.py",
    "speaker_tiny-0.6b-base-seed0.npz": "test_speaker_encoder.py",
    "speaker_tiny-1.7b-base-seed0.npz": "test_speaker_encoder.py",
    "codec_decode.npz": "test_codec_parity.py",
    "codec_encode.npz": "test_codec_parity.py",
    "mlx_audio_listing.py": "test_convert.py",
    "mlx_audio_qwen3_tts_tiny_q.json": "test_convert.py",  # through mlx_audio_listing.LISTING
}


def expected_files() -> set[str]:
    names = {f"talker_{checkpoint_name(size, variant)}.npz" for size, variant in CHECKPOINTS}
    names |= {f"generate_{case[0]}.npz" for case in GENERATION_CASES}
    names |= {f"generate_long_{case[0]}.npz" for case in LONG_CASES}
    names |= {f"generate_eos_{case[0]}.npz" for case in EOS_CASES}
    return names | set(OTHERS)


def test_every_fixture_is_read_and_every_named_fixture_exists():
    present = {p.name for p in FIXTURES.iterdir() if p.is_file()}
    assert present - expected_files() == set(), "fixtures no test reads"
    assert expected_files() - present == set(), "fixtures the tables name but nobody wrote"
    tests = Path(__file__).parent
    for name, reader in OTHERS.items():
        stem = name.rsplit(".", 1)[0]
        source = (tests / reader).read_text()
        # Named literally, or (speaker fixtures) through their f-string pattern.
        assert stem in source or (name.startswith("speaker_tiny") and 'f"speaker_{size}' in source), name
