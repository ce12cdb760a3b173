"""Instruction tokenisation with a checkpoint's own tokenizer files, and the tiny test tokenizer.

Real checkpoints ship Llama-2's `tokenizer.json` (plus `tokenizer.model`); it is read with the
`tokenizers` library exactly as written, so no remote code and no transformers tokenizer class is
involved. Llama-2 conventions kept by `build_tiny_tokenizer()`: `<unk>`=0, `<s>` (BOS)=1, `</s>`=2,
byte-fallback tokens `<0x00>`..`<0xFF>`, the SentencePiece space `▁` (prepended to the text and
replacing spaces), BOS added by the post-processor and a `<PAD>` token right after the base vocabulary.

The OpenVLA prompt is `In: What action should the robot take to {instruction.lower()}?\\nOut:`; after
tokenisation the empty token `▁` (Llama-2 id 29871) is appended when it is not already last, exactly
as OpenVLA-OFT / SimpleVLA-RL do before the action positions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

TINY_BASE_VOCAB = 384
TINY_EMPTY_TOKEN_ID = 259  # '▁'
SPIECE_UNDERLINE = "\u2581"

_TINY_MERGES = [
    ("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "a"), ("o", "n"), ("i", "n"), ("▁", "r"), ("o", "b"),
    ("▁r", "ob"), ("o", "t"), ("▁rob", "ot"), ("▁a", "c"), ("t", "i"), ("ti", "on"), ("▁ac", "tion"),
    ("▁", "W"), ("▁W", "h"), ("a", "t"), ("▁Wh", "at"), ("▁", "s"), ("o", "u"), ("▁s", "h"),
    ("▁sh", "ou"), ("l", "d"), ("▁shou", "ld"), ("▁t", "a"), ("k", "e"), ("▁ta", "ke"), ("▁t", "o"),
    ("▁", "p"),
]


def openvla_prompt(instruction: str) -> str:
    """The OpenVLA(-OFT) prompt for one instruction (lower-cased, as the LIBERO evaluation does)."""
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


def build_tiny_tokenizer():
    """A 385-token Llama-2-style BPE tokenizer (`tokenizers.Tokenizer`) for the tiny presets."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    vocab[SPIECE_UNDERLINE] = len(vocab)
    assert vocab[SPIECE_UNDERLINE] == TINY_EMPTY_TOKEN_ID
    for code in range(33, 127):
        vocab[chr(code)] = len(vocab)
    for left, right in _TINY_MERGES:
        assert left in vocab and right in vocab and left + right not in vocab, (left, right)
        vocab[left + right] = len(vocab)
    assert len(vocab) == TINY_BASE_VOCAB, len(vocab)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(_TINY_MERGES), unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPIECE_UNDERLINE), normalizers.Replace(" ", SPIECE_UNDERLINE)])
    tok.decoder = decoders.Sequence(
        [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken("<PAD>", special=True, normalized=False)])
    assert tok.token_to_id("<PAD>") == TINY_BASE_VOCAB
    return tok


class SentencePieceTokenizer:
    """Llama's slow-tokenizer behaviour over a `tokenizer.model`: BOS, then SentencePiece ids
    (dummy prefix, byte fallback). Exposes the small part of `tokenizers.Tokenizer` used here."""

    def __init__(self, path: str | Path):
        import sentencepiece

        self.path = Path(path)
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(self.path))

    def encode_batch(self, texts: Sequence[str]):
        from types import SimpleNamespace

        bos = self.processor.bos_id()
        return [SimpleNamespace(ids=[bos] + list(ids)) for ids in self.processor.encode(list(texts))]


class PromptTokenizer:
    """Turns instructions into OpenVLA prompt token ids (the part after BOS, ending with `▁`)."""

    def __init__(self, tokenizer, *, bos_token_id: int, empty_token_id: int, pad_token_id: int, source_dir: Path | None = None):
        self.tokenizer = tokenizer
        self.bos_token_id = bos_token_id
        self.empty_token_id = empty_token_id
        self.pad_token_id = pad_token_id
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self._bodies: dict[str, tuple[int, ...]] = {}  # instruction -> prompt body (LIBERO repeats a few)

    @classmethod
    def tiny(cls) -> "PromptTokenizer":
        return cls(build_tiny_tokenizer(), bos_token_id=1, empty_token_id=TINY_EMPTY_TOKEN_ID, pad_token_id=TINY_BASE_VOCAB)

    @classmethod
    def from_dir(cls, directory: str | Path, *, bos_token_id: int, empty_token_id: int, pad_token_id: int) -> "PromptTokenizer":
        """Read `tokenizer.json` (preferred) or, failing that, SentencePiece's `tokenizer.model`."""
        from tokenizers import Tokenizer

        directory = Path(directory)
        if (directory / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        elif (directory / "tokenizer.model").is_file():
            tokenizer = SentencePieceTokenizer(directory / "tokenizer.model")
        else:
            raise FileNotFoundError(
                f"tokenizer: expected {directory / 'tokenizer.json'} or tokenizer.model (shipped with OpenVLA checkpoints); "
                f"found {sorted(p.name for p in directory.iterdir())}"
            )
        return cls(tokenizer, bos_token_id=bos_token_id, empty_token_id=empty_token_id, pad_token_id=pad_token_id, source_dir=directory)

    def encode_prompt_bodies(self, instructions: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt without the leading BOS, ending with the empty token."""
        if isinstance(instructions, str):
            raise TypeError("instructions must be a sequence of strings, got a single str")
        new = sorted({text for text in instructions if text not in self._bodies})
        if len(self._bodies) + len(new) > 4096:
            self._bodies.clear()
        for text, enc in zip(new, self.tokenizer.encode_batch([openvla_prompt(text) for text in new])):
            ids = list(enc.ids)
            if ids and ids[0] == self.bos_token_id:
                ids = ids[1:]
            if not ids or ids[-1] != self.empty_token_id:
                ids.append(self.empty_token_id)
            self._bodies[text] = tuple(ids)
        return [list(self._bodies[text]) for text in instructions]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if not isinstance(self.tokenizer, SentencePieceTokenizer):
            self.tokenizer.save(str(directory / "tokenizer.json"))
        if self.source_dir is not None and (self.source_dir / "tokenizer.model").is_file():
            if self.source_dir.resolve() != directory.resolve():
                shutil.copyfile(self.source_dir / "tokenizer.model", directory / "tokenizer.model")
        special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<PAD>"}
        (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
        (directory / "added_tokens.json").write_text(json.dumps({"<PAD>": self.pad_token_id}, indent=2))
        tokenizer_config = {
            "add_bos_token": True,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "legacy": True,
            "model_max_length": 2048,
            "padding_side": "right",
            "tokenizer_class": "LlamaTokenizer",
            **special,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
