"""Reading and writing OpenVLA-OFT checkpoints in the official HuggingFace layout, without remote code.

Directory layout (what `openvla/openvla-7b`-style and OFT checkpoints ship, and what we write):
    config.json                      OpenVLAConfig fields (model_type "openvla", timm ids, text_config, ...)
    model.safetensors                one shard, or
    model-0000i-of-0000N.safetensors + model.safetensors.index.json  ({"metadata": {"total_size"}, "weight_map"})
    dataset_statistics.json          {dataset: {"action": {q01, q99, mask, ...}, "proprio": {...}}}
    preprocessor_config.json         PrismaticImageProcessor settings (means/stds per tower)
    tokenizer.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json (+ tokenizer.model)
Parameter names are the official ones: `vision_backbone.featurizer.*` (DINOv2, LayerScale as
`ls1.scale_factor`), `vision_backbone.fused_featurizer.*` (SigLIP), `projector.fc1/fc2/fc3`,
`language_model.model.*`, `language_model.lm_head.weight`, and `proprio_projector.fc1/fc2` when
proprio is used (OFT's separate `proprio_projector--*_checkpoint.pt` is read as well).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch

from vlarl_fast.policy.action_tokenizer import validate_statistics
from vlarl_fast.policy.config import (DINOV2_TIMM_ID, SIGLIP_TIMM_ID, OpenVLAOFTConfig, TextConfig, ViTConfig)
from vlarl_fast.policy.model import OpenVLAOFT
from vlarl_fast.policy.tokenizer import PromptTokenizer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
STATS_FILE = "dataset_statistics.json"
_TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings", "hidden_act")
_KNOWN_TOWERS = {DINOV2_TIMM_ID: ViTConfig.dinov2_vit_large_reg4, SIGLIP_TIMM_ID: ViTConfig.siglip_so400m}
# Non-persistent buffers some exporters still write (older transformers saved Llama's inv_freq).
_IGNORED_BUFFER = re.compile(r"\.rotary_emb\.inv_freq$")
_DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float16: "float16"}


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not match the model built from its config."""


class CorruptCheckpointError(ValueError):
    """A tensor file is unreadable, fails its checksum, or holds non-finite weights; the message
    names the file (and the tensor)."""


# sha256 of each tensor file, written by save_pretrained and checked by load_pretrained when present
# (official checkpoints have no such file; their files are still checked for readability and
# non-finite weights).
CHECKSUM_FILE = "tensor_checksums.json"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _listing(title: str, names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"{title} ({len(names)}): {shown}{more}"


# ---- config.json <-> OpenVLAOFTConfig ------------------------------------------------------------
def config_to_hf_dict(config: OpenVLAOFTConfig, norm_stats: Mapping[str, Any], dtype: torch.dtype) -> dict:
    towers = config.vision
    official = all(t.timm_id in _KNOWN_TOWERS and t == _KNOWN_TOWERS[t.timm_id](t.image_size) for t in towers)
    text = {f: getattr(config.text, f) for f in _TEXT_FIELDS}
    text.update(model_type="llama", pad_token_id=config.pad_token_id, torch_dtype=_DTYPE_NAMES.get(dtype, "float32"))
    out = {
        "architectures": ["OpenVLAForActionPrediction"],
        "auto_map": {
            "AutoConfig": "configuration_prismatic.OpenVLAConfig",
            "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction",
        },
        "model_type": "openvla",
        "vision_backbone_id": config.vision_backbone_id,
        "llm_backbone_id": config.llm_backbone_id,
        "hf_llm_id": "meta-llama/Llama-2-7b-hf",
        "arch_specifier": "no-align+fused-gelu-mlp",
        "use_fused_vision_backbone": True,
        "image_resize_strategy": "resize-naive",
        "image_sizes": [t.image_size for t in towers],
        "timm_model_ids": [t.timm_id for t in towers],
        "timm_override_act_layers": [None, None],
        "llm_max_length": 2048,
        "n_action_bins": config.n_action_bins,
        "pad_to_multiple_of": config.pad_to_multiple_of,
        "pad_token_id": config.pad_token_id,
        "norm_stats": dict(norm_stats),
        "output_projector_states": False,
        "text_config": text,
        "torch_dtype": _DTYPE_NAMES.get(dtype, "float32"),
        "use_proprio": config.use_proprio,
        "proprio_dim": config.proprio_dim,
        "num_images_in_input": config.num_images,
        "vlarl_fast": {
            "chunk_len": config.chunk_len, "action_dim": config.action_dim, "bos_token_id": config.bos_token_id,
            "stop_token_id": config.stop_token_id, "empty_token_id": config.empty_token_id,
            "image_pipeline": config.image_pipeline, "rotate_180": config.rotate_180,
            "center_crop": config.center_crop, "crop_scale": config.crop_scale,
            "resize_mode": config.resize_mode, "gripper_mode": config.gripper_mode,
        },
    }
    if not official:
        out["vlarl_fast"]["vision_towers"] = [dict(t.__dict__) for t in towers]
    return out


def config_from_hf_dict(d: Mapping[str, Any], *, num_images: int | None = None, use_proprio: bool | None = None) -> OpenVLAOFTConfig:
    """config.json -> OpenVLAOFTConfig.

    Image preprocessing: a config without preprocessing keys (an official config.json has no
    `vlarl_fast` block) gets the dataclass defaults, i.e. SimpleVLA-RL's pipeline
    (`image_pipeline="simplevla"`, centre crop) on frames already in OpenVLA orientation
    (`rotate_180=False`: the engine's image_convention="openvla"). The keys we write are read as
    written. A block written before `image_pipeline` existed (it has `rotate_180` but no
    `image_pipeline`) is migrated: custom towers (the tiny built-in policy) keep the fast "resize"
    path and their switches; official towers get the SimpleVLA-RL pipeline and `rotate_180=False`
    (the old default `rotate_180=True` rotated the engine's already rotated frames a second time).
    """
    extra = dict(d.get("vlarl_fast", {}))
    tower_dicts = extra.pop("vision_towers", None)
    if "rotate_180" in extra and "image_pipeline" not in extra:
        if tower_dicts is not None:
            extra["image_pipeline"] = "resize"
        else:
            extra.update(image_pipeline="simplevla", rotate_180=False)
    if tower_dicts is not None:
        towers = tuple(ViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}) for t in tower_dicts)
    else:
        ids = list(d.get("timm_model_ids", []))
        sizes = list(d.get("image_sizes", [224] * len(ids)))
        unknown = [i for i in ids if i not in _KNOWN_TOWERS]
        if len(ids) != 2 or unknown:
            raise ValueError(
                f"config.json timm_model_ids: expected the fused pair {[DINOV2_TIMM_ID, SIGLIP_TIMM_ID]}, got {ids}"
            )
        towers = tuple(_KNOWN_TOWERS[i](s) for i, s in zip(ids, sizes))
    text_in = dict(d.get("text_config", {}))
    text = TextConfig(**{f: text_in[f] for f in _TEXT_FIELDS if f in text_in})
    kwargs = dict(
        vision=towers, text=text,
        num_images=num_images if num_images is not None else int(d.get("num_images_in_input", 1)),
        use_proprio=use_proprio if use_proprio is not None else bool(d.get("use_proprio", False)),
        proprio_dim=int(d.get("proprio_dim", 8)),
        n_action_bins=int(d.get("n_action_bins", 256)),
        pad_to_multiple_of=int(d.get("pad_to_multiple_of", 64)),
        pad_token_id=int(d.get("pad_token_id", 32000)),
        vision_backbone_id=d.get("vision_backbone_id", "dinosiglip-vit-so-224px"),
        llm_backbone_id=d.get("llm_backbone_id", "llama2-7b-pure"),
    )
    kwargs.update(extra)
    return OpenVLAOFTConfig(**kwargs)


# ---- tensors -------------------------------------------------------------------------------------
def _shard_plan(state: Mapping[str, torch.Tensor], max_shard_size: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", size.upper())
    if not match:
        raise ValueError(f"max_shard_size must be bytes or like '5GB'/'200MB', got {size!r}")
    return int(float(match.group(1)) * {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[match.group(2)])


def save_pretrained(model: OpenVLAOFT, directory: str | Path, stats: Mapping[str, Any] | None = None,
                    tokenizer: PromptTokenizer | None = None, *, max_shard_size: int | str = "5GB") -> Path:
    """Write `model` in the official OpenVLA(-OFT) HF layout (see module docstring)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stats = dict(model.norm_stats if stats is None else stats)
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    state = model.state_dict()
    plan = _shard_plan(state, _parse_size(max_shard_size))
    for stale in list(directory.glob("model*.safetensors")) + [directory / INDEX_FILE, directory / CHECKSUM_FILE]:
        stale.unlink(missing_ok=True)

    def host_shard(names: list[str]) -> dict[str, torch.Tensor]:  # one shard in host memory at a time
        return {n: state[n].detach().to("cpu").contiguous() for n in names}

    if len(plan) == 1:
        save_file(host_shard(plan[0]), str(directory / SINGLE_FILE), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, names in enumerate(plan, start=1):
            filename = f"model-{i:05d}-of-{len(plan):05d}.safetensors"
            save_file(host_shard(names), str(directory / filename), metadata={"format": "pt"})
            weight_map.update({n: filename for n in names})
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True))
    checksums = {p.name: file_sha256(p) for p in sorted(directory.glob("model*.safetensors"))}
    (directory / CHECKSUM_FILE).write_text(json.dumps({"sha256": checksums}, indent=2))
    return save_metadata(model, directory, stats=stats, tokenizer=tokenizer, dtype=model.dtype)


def save_metadata(model: OpenVLAOFT, directory: str | Path, stats: Mapping[str, Any] | None = None,
                  tokenizer: PromptTokenizer | None = None, *, dtype: torch.dtype | None = None) -> Path:
    """Everything of the official layout but the tensors: config.json, statistics, processor
    configs, tokenizer and the original checkpoint's remote-code files (`build_from_metadata`
    reads it back; a training checkpoint keeps its weights sharded next to it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stats = dict(model.norm_stats if stats is None else stats)
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    dtype = model.dtype if dtype is None else dtype
    (directory / "config.json").write_text(json.dumps(config_to_hf_dict(model.config, stats, dtype), indent=2))
    (directory / STATS_FILE).write_text(json.dumps(stats, indent=2))
    towers = model.config.vision
    preprocessor = {
        "auto_map": {"AutoImageProcessor": "processing_prismatic.PrismaticImageProcessor",
                     "AutoProcessor": "processing_prismatic.PrismaticProcessor"},
        "image_processor_type": "PrismaticImageProcessor",
        "processor_class": "PrismaticProcessor",
        "image_resize_strategy": "resize-naive",
        "input_sizes": [[3, t.image_size, t.image_size] for t in towers],
        "interpolations": ["bicubic", "bicubic"],
        "means": [list(t.mean) for t in towers],
        "stds": [list(t.std) for t in towers],
        "timm_model_ids": [t.timm_id for t in towers],
        "timm_override_act_layers": [None, None],
        "use_fused_vision_backbone": True,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    processor_config = {"auto_map": {"AutoProcessor": "processing_prismatic.PrismaticProcessor"},
                        "processor_class": "PrismaticProcessor"}
    (directory / "processor_config.json").write_text(json.dumps(processor_config, indent=2))
    if tokenizer is not None:
        tokenizer.save(directory)
    _carry_source_files(getattr(model, "source_dir", None), directory)
    return directory


# Files of the original checkpoint this package does not produce but the original tools read
# (the remote-code modules `AutoModelForVision2Seq(trust_remote_code=True)` imports).
_CARRIED_FILES = ("configuration_prismatic.py", "modeling_prismatic.py", "processing_prismatic.py",
                  "constants.py", "generation_config.json")


def _carry_source_files(source: Path | None, directory: Path) -> None:
    if source is None or not Path(source).is_dir() or Path(source).resolve() == directory.resolve():
        return
    for name in _CARRIED_FILES:
        if (Path(source) / name).is_file():
            shutil.copyfile(Path(source) / name, directory / name)


def _tensor_files(directory: Path) -> dict[str, str]:
    """name -> shard filename."""
    from safetensors import safe_open

    if (directory / INDEX_FILE).is_file():
        index = json.loads((directory / INDEX_FILE).read_text())
        if "weight_map" not in index:
            raise ValueError(f"{directory / INDEX_FILE}: missing 'weight_map'")
        missing_files = sorted({f for f in index["weight_map"].values() if not (directory / f).is_file()})
        if missing_files:
            raise FileNotFoundError(f"{directory}: index names shard files that do not exist: {missing_files}")
        return dict(index["weight_map"])
    if (directory / SINGLE_FILE).is_file():
        with _open_tensors(directory / SINGLE_FILE) as f:
            return {k: SINGLE_FILE for k in f.keys()}
    raise FileNotFoundError(f"{directory}: expected {INDEX_FILE} or {SINGLE_FILE}; found {sorted(p.name for p in directory.iterdir())}")


def _open_tensors(path: Path):
    """safe_open, with a corrupt or truncated file reported by name."""
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CorruptCheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(exc).split())})") from exc


def _verify_checksums(directory: Path, filenames) -> None:
    path = directory / CHECKSUM_FILE
    if not path.is_file():
        return
    try:
        sums = json.loads(path.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCheckpointError(f"{path}: unreadable ({exc})") from exc
    for name in sorted(set(filenames)):
        if name in sums and file_sha256(directory / name) != sums[name]:
            raise CorruptCheckpointError(f"{directory / name}: its sha256 does not match {path} "
                                         "(the file was changed or corrupted after it was written)")


def _read_tensor(f, path: Path, name: str) -> torch.Tensor:
    try:
        tensor = f.get_tensor(name)
    except Exception as exc:  # noqa: BLE001
        raise CorruptCheckpointError(f"{path}: tensor {name} cannot be read ({' '.join(str(exc).split())})") from exc
    if tensor.is_floating_point():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise CorruptCheckpointError(f"{path}: tensor {name} holds {bad} non-finite value(s) (NaN/inf) of "
                                         f"{tensor.numel()}; refusing to load it")
    return tensor


def _read_oft_proprio_projector(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("proprio_projector--*_checkpoint.pt"))
    if not files:
        return {}
    raw = torch.load(files[-1], map_location="cpu", weights_only=True)
    return {"proprio_projector." + k.removeprefix("module."): v for k, v in raw.items()}


def load_pretrained(directory: str | Path, *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                    num_images: int | None = None, use_proprio: bool | None = None,
                    attn_implementation: str = "sdpa") -> OpenVLAOFT:
    """Build the model from `config.json` and load its tensors; every mismatch is an error listing names."""
    from safetensors import safe_open

    directory = Path(directory)
    model = _meta_model(directory, num_images, use_proprio, attn_implementation)
    config = model.config
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    files = {k: f for k, f in _tensor_files(directory).items() if not _IGNORED_BUFFER.search(k)}
    extra_tensors = _read_oft_proprio_projector(directory) if config.use_proprio else {}
    present = set(files) | set(extra_tensors)
    missing = sorted(set(expected) - present)
    unexpected = sorted(present - set(expected))
    shapes: dict[str, tuple] = {}
    by_file: dict[str, list[str]] = {}
    for name, filename in files.items():
        by_file.setdefault(filename, []).append(name)
    _verify_checksums(directory, by_file)
    for filename, names in by_file.items():
        with _open_tensors(directory / filename) as f:
            for name in names:
                shapes[name] = tuple(f.get_slice(name).get_shape())
    shapes.update({k: tuple(v.shape) for k, v in extra_tensors.items()})
    wrong = sorted(n for n in set(expected) & present if shapes[n] != expected[n])
    if missing or unexpected or wrong:
        parts = [f"checkpoint {directory} does not match the model built from its config.json"]
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if wrong:
            parts.append(_listing("shape mismatches", [f"{n}: checkpoint {shapes[n]} vs model {expected[n]}" for n in wrong]))
        raise CheckpointMismatchError("\n  ".join(parts))

    state: dict[str, torch.Tensor] = {}
    for filename, names in by_file.items():
        with _open_tensors(directory / filename) as f:
            for name in names:
                state[name] = _read_tensor(f, directory / filename, name).to(device=device, dtype=dtype)
    state.update({k: v.to(device=device, dtype=dtype) for k, v in extra_tensors.items()})
    model.load_state_dict(state, strict=True, assign=True)
    model.source_dir = directory
    _materialise_buffers(model, device)
    return model.eval()


def read_statistics(directory: str | Path, hf: dict | None = None, action_dim: int | None = None) -> dict:
    """A checkpoint's normalisation statistics ({key: {"action": ..., "proprio": ...}}): its
    dataset_statistics.json, else config.json's `norm_stats`; validated."""
    directory = Path(directory)
    if hf is None:
        hf = json.loads((directory / "config.json").read_text())
    path = directory / STATS_FILE
    stats = json.loads(path.read_text()) if path.is_file() else hf.get("norm_stats") or {}
    validate_statistics(stats, action_dim if action_dim is not None else config_from_hf_dict(hf).action_dim)
    return stats


def _meta_model(directory: Path, num_images, use_proprio, attn_implementation: str) -> OpenVLAOFT:
    """The model `config.json` describes, with its statistics and tokenizer, on the meta device."""
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no config.json")
    hf = json.loads((directory / "config.json").read_text())
    config = config_from_hf_dict(hf, num_images=num_images, use_proprio=use_proprio)
    stats = read_statistics(directory, hf, config.action_dim)
    tokenizer = None
    if (directory / "tokenizer.json").is_file():
        tokenizer = PromptTokenizer.from_dir(directory, bos_token_id=config.bos_token_id,
                                             empty_token_id=config.empty_token_id, pad_token_id=config.pad_token_id)
    with torch.device("meta"):
        return OpenVLAOFT(config, tokenizer=tokenizer, norm_stats=stats, attn_implementation=attn_implementation)


def build_from_metadata(directory: str | Path, *, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu", attn_implementation: str = "sdpa") -> OpenVLAOFT:
    """The model of a `save_metadata` directory with uninitialised (allocated, not loaded) tensors,
    to be filled by the caller (a sharded checkpoint reader)."""
    directory = Path(directory)
    model = _meta_model(directory, None, None, attn_implementation)
    model = empty_like(model, dtype=dtype, device=device)
    model.source_dir = directory
    return model


def empty_like(model: OpenVLAOFT, *, dtype: torch.dtype, device: str | torch.device) -> OpenVLAOFT:
    """A model of the same config, statistics and tokenizer with uninitialised `dtype` tensors on
    `device`, built without materialising any other copy (meta device, then `to_empty`)."""
    with torch.device("meta"):
        out = OpenVLAOFT(model.config, tokenizer=model.tokenizer, norm_stats=model.norm_stats,
                         attn_implementation=model.language_model.config._attn_implementation)
    out.to_empty(device=device)
    out.to(dtype)
    out.source_dir = getattr(model, "source_dir", None)
    _materialise_buffers(out, device)
    return out.eval()


def _materialise_buffers(model: OpenVLAOFT, device) -> None:
    """Non-persistent buffers (Llama's rotary inv_freq) are not in checkpoints: rebuild them."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    lm = model.language_model.model
    lm.rotary_emb = LlamaRotaryEmbedding(config=lm.config).to(device)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise CheckpointMismatchError(_listing("tensors left uninitialised after loading", leftover))
