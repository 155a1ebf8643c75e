"""Special token ids and codec constants of the released 12 Hz checkpoints (dossier §3.1, §2.4).

The codec-side control ids are read from each checkpoint's ``talker_config``; the text-side ids
below are fixed by the tokenizer files every release shares.
"""

ENDOFTEXT = 151643
IM_START = 151644
IM_END = 151645
AUDIO_START = 151669
AUDIO_END = 151670
TTS_PAD = 151671
TTS_BOS = 151672
TTS_EOS = 151673
TTS_BOS_SINGLE = 151674
AUDIO_PAD = 151675
ASSISTANT = 77091
NEWLINE = 198

# Added tokens of the released tokenizer_config.json, in id order (dossier §3.1). Ids in
# NOT_SPECIAL are added tokens whose "special" flag is false (decoded like ordinary text).
ADDED_TOKENS: dict[int, str] = {
    151643: "<|endoftext|>",
    151644: "<|im_start|>",
    151645: "<|im_end|>",
    151646: "<|object_ref_start|>",
    151647: "<|object_ref_end|>",
    151648: "<|box_start|>",
    151649: "<|box_end|>",
    151650: "<|quad_start|>",
    151651: "<|quad_end|>",
    151652: "<|vision_start|>",
    151653: "<|vision_end|>",
    151654: "<|vision_pad|>",
    151655: "<|image_pad|>",
    151656: "<|video_pad|>",
    151657: "<tool_call>",
    151658: "</tool_call>",
    151659: "<|fim_prefix|>",
    151660: "<|fim_middle|>",
    151661: "<|fim_suffix|>",
    151662: "<|fim_pad|>",
    151663: "<|repo_name|>",
    151664: "<|file_sep|>",
    151665: "<tool_response>",
    151666: "</tool_response>",
    151667: "<think>",
    151668: "</think>",
    151669: "<|audio_start|>",
    151670: "<|audio_end|>",
    151671: "<tts_pad>",
    151672: "<tts_text_bos>",
    151673: "<tts_text_eod>",
    151674: "<tts_text_bos_single>",
    151675: "<|audio_pad|>",
}
NOT_SPECIAL = frozenset(range(151657, 151669))

SAMPLE_RATE = 24000
SAMPLES_PER_FRAME = 1920
FRAME_RATE = SAMPLE_RATE / SAMPLES_PER_FRAME  # 12.5 Hz
CODEBOOK_SIZE = 2048
NUM_CODE_GROUPS = 16  # codebooks per frame: c0 from the talker, c1..c15 from the code predictor
# The talker's top rows are control and speaker ids: suppressed when sampling, except EOS (§3.7).
TALKER_CONTROL_ROWS = 1024
