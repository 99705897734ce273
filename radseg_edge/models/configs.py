"""RADIO architectures as data: a table of named configurations (RADIO.md, "Variants").

A configuration fixes the backbone (width, depth, heads, MLP width, prefix tokens, LayerScale, CPE grid)
and the teachers whose adaptor heads exist. Checkpoints override everything that their tensors or
``args`` determine (see :mod:`radseg_edge.models.checkpoint`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from radseg_edge.errors import InputError


@dataclass(frozen=True)
class TeacherSpec:
    """One distillation teacher, i.e. one pair of adaptor heads.

    Attributes:
        name: teacher name as in the checkpoint's ``args.teachers`` ("siglip2", "sam", ...).
        model: the teacher model id (tells which text tower matches the language head).
        use_summary: whether its cls token takes part in the backbone summary.
        summary_dim / feature_dim: output widths of the summary / dense feature heads.
        hidden_dim / summary_inner / feature_inner: MLP2 sizes used when building random weights.
    """

    name: str
    type: str = ""
    model: str = ""
    use_summary: bool = True
    summary_dim: int = 0
    feature_dim: int = 0
    hidden_dim: int = 1520
    summary_inner: int = 1
    feature_inner: int = 1


@dataclass(frozen=True)
class RadioConfig:
    """A RADIO ViT backbone and its teachers. Lengths in tokens, widths in channels."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: int = 16
    num_cls_tokens: int = 4
    num_registers: int = 4
    layer_scale: bool = False
    cpe_grid: int = 128
    preferred_resolution: int = 512
    align_corners: bool = False
    model_norm: bool = False
    teachers: tuple[TeacherSpec, ...] = ()
    license: str = ""
    hf_repo: str = ""
    hf_filename: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_prefix_tokens(self) -> int:
        return self.num_cls_tokens + self.num_registers

    @property
    def teacher_names(self) -> list[str]:
        """Distinct teacher names in order: the cls-token slot of a teacher is its index here."""
        return list(dict.fromkeys(t.name for t in self.teachers))

    @property
    def summary_idxs(self) -> list[int]:
        """cls-token slots that form the backbone summary (teachers with use_summary, first occurrence)."""
        names = self.teacher_names
        if self.num_cls_tokens == 1:
            return [0]
        seen: list[int] = []
        for t in self.teachers:
            idx = names.index(t.name)
            if t.use_summary and idx not in seen:
                seen.append(idx)
        return seen

    def cls_slot(self, teacher: str) -> int:
        """Index of the cls token that the teacher's summary head reads."""
        return 0 if self.num_cls_tokens == 1 else self.teacher_names.index(teacher)

    def language_teacher(self) -> str | None:
        """The teacher whose summary head maps to a text-embedding space (RADSeg's language head)."""
        for preferred in ("siglip2-g", "siglip2", "siglip", "clip"):
            if preferred in self.teacher_names:
                return preferred
        return None

    def replace(self, **changes) -> RadioConfig:
        return dataclasses.replace(self, **changes)


# Teacher sets of the released checkpoints (summary/feature widths of the real heads).
def _teachers_v3(lang: str, lang_model: str, lang_dim: int) -> tuple[TeacherSpec, ...]:
    return (
        TeacherSpec("clip", "open_clip", "ViT-H-14-378-quickgelu", True, 1024, 1280),
        TeacherSpec(lang, "siglip2", lang_model, True, lang_dim, 1152 if lang_dim == 1152 else 1536),
        TeacherSpec("dino_v2", "dino_v2", "dinov2_vitg14_reg", True, 1536, 1536),
        TeacherSpec("sam", "sam", "vit-h", False, 1280, 1280),
    )


_TEACHERS_V25 = (
    TeacherSpec("clip", "open_clip", "ViT-H-14-378-quickgelu", True, 1024, 1280),
    TeacherSpec("siglip", "open_clip", "ViT-SO400M-14-SigLIP-384", True, 1152, 1152),
    TeacherSpec("dino_v2", "dino_v2", "dinov2_vitg14_reg", True, 1536, 1536),
    TeacherSpec("sam", "sam", "vit-h", False, 1280, 1280),
)

_C_RADIO = "NVIDIA Open Model License (commercial use allowed)"
_RADIO_NC = "NVIDIA Source Code License-NC (non-commercial use only)"

_B = dict(embed_dim=768, depth=12, num_heads=12, mlp_hidden=3072)
_L = dict(embed_dim=1024, depth=24, num_heads=16, mlp_hidden=4096)
_H = dict(embed_dim=1280, depth=32, num_heads=16, mlp_hidden=5120)
_SO400M = dict(embed_dim=1152, depth=27, num_heads=16, mlp_hidden=4304)

CONFIGS: dict[str, RadioConfig] = {
    "c-radio_v3-b": RadioConfig(
        "c-radio_v3-b", **_B, layer_scale=True, teachers=_teachers_v3("siglip2", "siglip2-so400m", 1152),
        license=_C_RADIO, hf_repo="nvidia/C-RADIOv3-B", hf_filename="c-radio_v3-b_half.pth.tar",
    ),
    "c-radio_v3-l": RadioConfig(
        "c-radio_v3-l", **_L, layer_scale=True, teachers=_teachers_v3("siglip2", "siglip2-so400m", 1152),
        license=_C_RADIO, hf_repo="nvidia/C-RADIOv3-L", hf_filename="c-radio_v3-l_half.pth.tar",
    ),
    "c-radio_v3-h": RadioConfig(
        "c-radio_v3-h", **_H, teachers=_teachers_v3("siglip2-g", "siglip2-g-384", 1536),
        license=_C_RADIO, hf_repo="nvidia/C-RADIOv3-H", hf_filename="c-radio_v3-h_half.pth.tar",
    ),
    "radio_v2.5-b": RadioConfig(
        "radio_v2.5-b", **_B, preferred_resolution=768, teachers=_TEACHERS_V25,
        license=_RADIO_NC, hf_repo="nvidia/RADIO", hf_filename="radio-v2.5-b_half.pth.tar",
    ),
    "radio_v2.5-l": RadioConfig(
        "radio_v2.5-l", **_L, preferred_resolution=768, teachers=_TEACHERS_V25,
        license=_RADIO_NC, hf_repo="nvidia/RADIO", hf_filename="radio-v2.5-l_half.pth.tar",
    ),
    "radio_v2.5-h": RadioConfig(
        "radio_v2.5-h", **_H, preferred_resolution=768, teachers=_TEACHERS_V25,
        license=_RADIO_NC, hf_repo="nvidia/RADIO", hf_filename="radio-v2.5-h_half.pth.tar",
    ),
    "c-radio_v4-so400m": RadioConfig(
        "c-radio_v4-so400m", **_SO400M, num_cls_tokens=3, num_registers=7,
        teachers=(
            TeacherSpec("siglip2-g", "siglip2", "siglip2-g-384", True, 1536, 1536),
            TeacherSpec("dino_v3", "dino_v3", "dinov3-7b", True, 4096, 4096),
            TeacherSpec("sam", "sam", "vit-h", False, 1280, 1280),
        ),
        license=_C_RADIO, hf_repo="nvidia/C-RADIOv4-SO400M",
    ),
    "c-radio_v4-h": RadioConfig(
        "c-radio_v4-h", **_H, num_cls_tokens=3, num_registers=7,
        teachers=(
            TeacherSpec("siglip2-g", "siglip2", "siglip2-g-384", True, 1536, 1536),
            TeacherSpec("dino_v3", "dino_v3", "dinov3-7b", True, 4096, 4096),
            TeacherSpec("sam", "sam", "vit-h", False, 1280, 1280),
        ),
        license=_C_RADIO, hf_repo="nvidia/C-RADIOv4-H",
    ),
    # Small configurations for tests and examples (random weights only).
    "tiny": RadioConfig(
        "tiny", embed_dim=192, depth=4, num_heads=3, mlp_hidden=768, layer_scale=True, cpe_grid=32,
        teachers=(
            TeacherSpec("clip", "open_clip", "", True, 48, 48, hidden_dim=96),
            TeacherSpec("siglip2", "siglip2", "siglip2-so400m", True, 64, 64, hidden_dim=96),
            TeacherSpec("dino_v2", "dino_v2", "", True, 40, 40, hidden_dim=96),
            TeacherSpec("sam", "sam", "vit-h", False, 24, 32, hidden_dim=96),
        ),
        license="random weights",
    ),
    "small": RadioConfig(
        "small", embed_dim=384, depth=6, num_heads=6, mlp_hidden=1536, layer_scale=True, cpe_grid=128,
        teachers=(
            TeacherSpec("siglip2", "siglip2", "siglip2-so400m", True, 256, 256, hidden_dim=256),
            TeacherSpec("sam", "sam", "vit-h", False, 64, 64, hidden_dim=256),
        ),
        license="random weights",
    ),
}

#: timm/RADIO architecture names found in ``args.model`` -> (width, depth, heads, mlp, LayerScale).
TIMM_ARCHS: dict[str, dict] = {
    "vit_base_patch16_v2_224": dict(_B, layer_scale=True),
    "vit_large_patch16_v2_224": dict(_L, layer_scale=True),
    "vit_base_patch16_224": dict(_B),
    "vit_large_patch16_224": dict(_L),
    "vit_huge_patch16_224": dict(_H),
    "vit_so400m_patch16_siglip_256": dict(_SO400M),
}

#: text tower matching a language teacher's ``model`` field (RADIO.md, "Text towers").
TEXT_MODELS: dict[str, str] = {
    "siglip2-so400m": "google/siglip2-so400m-patch16-naflex",
    "siglip2-g": "google/siglip2-giant-opt-patch16-384",
    "siglip2-g-384": "google/siglip2-giant-opt-patch16-384",
    "ViT-SO400M-14-SigLIP-384": "open_clip:ViT-SO400M-14-SigLIP-384/webli",
    "ViT-H-14-378-quickgelu": "open_clip:ViT-H-14-378-quickgelu/dfn5b",
}


def get_config(name: str) -> RadioConfig:
    """The named configuration; a clear error lists the known names."""
    key = name.lower()
    if key not in CONFIGS:
        raise InputError(f"unknown RADIO model '{name}'; known models: {', '.join(CONFIGS)}")
    return CONFIGS[key]
