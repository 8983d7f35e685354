"""Model configuration: one frozen dataclass with Hugging Face field names, and named presets."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CodeGemmaError

SLIDING = "sliding_attention"
FULL = "full_attention"
ARCHITECTURES = ("gemma", "gemma2", "gemma3")


class ConfigError(CodeGemmaError, ValueError):
    """A config.json or preset that cannot describe a Gemma model."""


@dataclass(frozen=True)
class GemmaConfig:
    """Architecture of a Gemma 1/2/3 text model. Field names follow Hugging Face's config.json."""

    model_type: str = "gemma"  # architecture family: gemma (CodeGemma), gemma2 or gemma3
    vocab_size: int = 256000  # rows of the (tied) embedding matrix
    hidden_size: int = 2048  # residual stream width
    intermediate_size: int = 16384  # width of each GeGLU branch (gate and up)
    num_hidden_layers: int = 18  # transformer blocks
    num_attention_heads: int = 8  # query heads
    num_key_value_heads: int = 1  # 1 = MQA, == heads = MHA, otherwise GQA
    head_dim: int = 256  # per-head width; never derived from hidden/heads (7B: 3072/16 != 256)
    max_position_embeddings: int = 8192  # context window the model was trained for
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon
    rope_theta: float = 10000.0  # RoPE base of global (full-attention) layers
    rope_local_base_freq: float | None = None  # RoPE base of sliding layers (Gemma 3); None = rope_theta
    rope_scaling_factor: float = 1.0  # linear RoPE scaling of global layers (Gemma 3 4B and up: 8)
    hidden_activation: str = "gelu_pytorch_tanh"  # recorded only: Gemma always uses tanh-GELU
    tie_word_embeddings: bool = True  # output head is the embedding matrix
    bos_token_id: int = 2
    eos_token_id: int = 1
    pad_token_id: int = 0
    query_pre_attn_scalar: float | None = None  # queries scaled by this^-0.5; None = head_dim (Gemma 1)
    sliding_window: int | None = None  # window of sliding layers (Gemma 2/3)
    layer_types: tuple[str, ...] | None = None  # per layer SLIDING or FULL; None = all FULL
    attn_logit_softcapping: float | None = None  # Gemma 2: tanh cap on attention scores
    final_logit_softcapping: float | None = None  # Gemma 2: tanh cap on output logits
    torch_dtype: str | None = None  # dtype the checkpoint was saved in, if stated
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # unknown keys, kept

    def __post_init__(self) -> None:
        if self.model_type not in ARCHITECTURES:
            raise ConfigError(f"unsupported model_type {self.model_type!r}; supported: {', '.join(ARCHITECTURES)}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                              f"num_key_value_heads ({self.num_key_value_heads})")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_hidden_layers:
                raise ConfigError(f"layer_types has {len(self.layer_types)} entries for "
                                  f"{self.num_hidden_layers} layers")
            bad = set(self.layer_types) - {SLIDING, FULL}
            if bad:
                raise ConfigError(f"unknown layer types {sorted(bad)}")
            if SLIDING in self.layer_types and not self.sliding_window:
                raise ConfigError("sliding layers need a positive sliding_window")

    # Derived facts, each in one place.
    @property
    def has_post_norms(self) -> bool:
        """Gemma 2/3 blocks have four norms: pre/post attention and pre/post feed-forward."""
        return self.model_type in ("gemma2", "gemma3")

    @property
    def has_qk_norm(self) -> bool:
        """Gemma 3 RMS-normalises queries and keys per head."""
        return self.model_type == "gemma3"

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.hidden_size)

    def is_sliding(self, layer: int) -> bool:
        return self.layer_types is not None and self.layer_types[layer] == SLIDING

    def rope_base(self, layer: int) -> float:
        if self.is_sliding(layer) and self.rope_local_base_freq is not None:
            return self.rope_local_base_freq
        return self.rope_theta

    def rope_scale(self, layer: int) -> float:
        """Positions are divided by this (linear scaling applies to global layers only)."""
        return 1.0 if self.is_sliding(layer) else self.rope_scaling_factor

    def replace(self, **changes: Any) -> GemmaConfig:
        return dataclasses.replace(self, **changes)

    # Hugging Face config.json <-> GemmaConfig
    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> GemmaConfig:
        """Reads a Hugging Face config dict (Gemma, Gemma 2, Gemma 3 text; transformers 4 and 5 layouts)."""
        if raw.get("model_type") == "gemma3" and "text_config" in raw:  # the multimodal wrapper
            raw = raw["text_config"]
        raw = dict(raw)
        model_type = {"gemma3_text": "gemma3"}.get(raw.get("model_type", "gemma"), raw.get("model_type", "gemma"))
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "model_type"}
        values: dict[str, Any] = {k: raw[k] for k in known if k in raw and raw[k] is not None}
        values.update(_rope_from_hf(raw, model_type))
        if "hidden_act" in raw and "hidden_activation" not in raw:
            values["hidden_activation"] = raw["hidden_act"]
        if isinstance(values.get("eos_token_id"), list):
            values["eos_token_id"] = values["eos_token_id"][0]
        values.update(_layer_types_from_hf(raw, model_type))
        if model_type == "gemma":
            values.pop("query_pre_attn_scalar", None)
        if values.get("tie_word_embeddings") is False:
            raise ConfigError("tie_word_embeddings is false: this checkpoint has its own output head (lm_head), "
                              "and every Gemma model ties the head to the embedding; codegemma does not load it")
        extra = {k: v for k, v in raw.items() if k not in known}
        try:
            return cls(model_type=model_type, extra=extra, **values)
        except TypeError as exc:
            raise ConfigError(f"bad config value: {exc}") from exc

    @classmethod
    def from_json(cls, path: str | Path) -> GemmaConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: config must be a JSON object")
        return cls.from_hf_dict(raw)

    def to_hf_dict(self) -> dict[str, Any]:
        """The config.json transformers reads (GemmaForCausalLM / Gemma2ForCausalLM / Gemma3ForCausalLM)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra" and v is not None}
        out.update({k: v for k, v in self.extra.items() if k not in out})
        out["architectures"] = [{"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
                                 "gemma3": "Gemma3ForCausalLM"}[self.model_type]]
        out["model_type"] = {"gemma3": "gemma3_text"}.get(self.model_type, self.model_type)
        out["hidden_act"] = self.hidden_activation
        if self.query_pre_attn_scalar is not None and float(self.query_pre_attn_scalar).is_integer():
            out["query_pre_attn_scalar"] = int(self.query_pre_attn_scalar)  # transformers insists on an int
        if self.layer_types is not None:
            out["layer_types"] = list(self.layer_types)
        full = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling_factor != 1.0:
            full = {"rope_type": "linear", "rope_theta": self.rope_theta, "factor": self.rope_scaling_factor}
            out["rope_scaling"] = {"rope_type": "linear", "factor": self.rope_scaling_factor}
        out.pop("rope_scaling_factor", None)
        if self.model_type == "gemma3":
            out["rope_parameters"] = {
                FULL: full,
                SLIDING: {"rope_type": "default", "rope_theta": self.rope_local_base_freq or self.rope_theta},
            }
        return out


def _rope_from_hf(raw: dict[str, Any], model_type: str) -> dict[str, float]:
    params = raw.get("rope_parameters") or {}
    out: dict[str, float] = {}
    if FULL in params or SLIDING in params:  # transformers 5, Gemma 3: one entry per layer type
        if FULL in params and "rope_theta" in params[FULL]:
            out["rope_theta"] = float(params[FULL]["rope_theta"])
        if SLIDING in params and "rope_theta" in params[SLIDING]:
            out["rope_local_base_freq"] = float(params[SLIDING]["rope_theta"])
    elif "rope_theta" in params:
        out["rope_theta"] = float(params["rope_theta"])
    if "rope_theta" in raw and "rope_theta" not in out:
        out["rope_theta"] = float(raw["rope_theta"])
    if "rope_local_base_freq" in raw and "rope_local_base_freq" not in out:
        out["rope_local_base_freq"] = float(raw["rope_local_base_freq"])
    if model_type == "gemma3":  # transformers' defaults when the file is silent
        out.setdefault("rope_theta", 1_000_000.0)
        out.setdefault("rope_local_base_freq", 10_000.0)
    scaling = raw.get("rope_scaling") or (params.get(FULL, params) if isinstance(params, dict) else {})
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else "default"
    if kind == "linear":
        out["rope_scaling_factor"] = float(scaling["factor"])
    elif kind not in ("default", None):
        raise ConfigError(f"RoPE scaling {kind!r} is not supported (only linear)")
    return out


def _layer_types_from_hf(raw: dict[str, Any], model_type: str) -> dict[str, Any]:
    if model_type == "gemma":
        return {"layer_types": None, "sliding_window": None}
    n = int(raw.get("num_hidden_layers", GemmaConfig.num_hidden_layers))
    if raw.get("layer_types"):
        types = tuple(raw["layer_types"])
    else:  # transformers' defaults: Gemma 2 alternates, Gemma 3 has one global layer in every six
        pattern = 2 if model_type == "gemma2" else int(raw.get("sliding_window_pattern", 6))
        types = tuple(SLIDING if (i + 1) % pattern else FULL for i in range(n))
    out: dict[str, Any] = {"layer_types": types}
    if model_type == "gemma2":
        out.setdefault("attn_logit_softcapping", raw.get("attn_logit_softcapping", 50.0))
        out.setdefault("final_logit_softcapping", raw.get("final_logit_softcapping", 30.0))
    out["sliding_window"] = raw.get("sliding_window", 4096)
    out["query_pre_attn_scalar"] = raw.get("query_pre_attn_scalar", 256)
    return out


# Named presets. Sources: the CodeGemma technical report (arXiv 2406.11409), table 1, and the
# config.json files published with each model on huggingface.co/google/<name>.
_CODEGEMMA_2B = dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                     num_attention_heads=8, num_key_value_heads=1, head_dim=256)
_CODEGEMMA_7B = dict(hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
                     num_attention_heads=16, num_key_value_heads=16, head_dim=256)

PRESETS: dict[str, GemmaConfig] = {
    # https://huggingface.co/google/codegemma-2b/blob/main/config.json
    "codegemma-2b": GemmaConfig(**_CODEGEMMA_2B),
    # https://huggingface.co/google/codegemma-1.1-2b/blob/main/config.json
    "codegemma-1.1-2b": GemmaConfig(**_CODEGEMMA_2B),
    # https://huggingface.co/google/codegemma-7b/blob/main/config.json
    "codegemma-7b": GemmaConfig(**_CODEGEMMA_7B),
    # https://huggingface.co/google/codegemma-7b-it/blob/main/config.json
    "codegemma-7b-it": GemmaConfig(**_CODEGEMMA_7B),
    # https://huggingface.co/google/codegemma-1.1-7b-it/blob/main/config.json
    "codegemma-1.1-7b-it": GemmaConfig(**_CODEGEMMA_7B),
    # Tiny test models (torchtitan's debugmodel idea): random weights, seconds on CPU.
    "tiny": GemmaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=512),
    "tiny-gqa": GemmaConfig(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=512),
    "tiny-mha": GemmaConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=4, head_dim=12, max_position_embeddings=512),
    # Small CodeGemma-architecture models to train from scratch with one's own tokenizer (own vocabularies).
    "codegemma-100m": GemmaConfig(vocab_size=32768, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                  num_attention_heads=12, num_key_value_heads=1, head_dim=64,
                                  max_position_embeddings=2048),
    "codegemma-e2e": GemmaConfig(vocab_size=1024, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                 num_attention_heads=4, num_key_value_heads=1, head_dim=64,
                                 max_position_embeddings=1024),
}


def preset(name: str) -> GemmaConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
