"""Loading RADIO checkpoints safely: the official ``.pth.tar`` and the Hugging Face layout.

* ``.pth.tar``: a pickled dict with ``args`` (argparse.Namespace) and ``state_dict`` / ``state_dict_ema``.
  Unpickled with ``torch.load(weights_only=True)`` and only argparse.Namespace admitted beyond tensors, so
  no code in the file is ever executed; anything else is refused with a :class:`CheckpointError`.
* Hugging Face: a folder (or repo) with ``config.json`` (holding ``args``) and ``*.safetensors``.

The conversion from the foreign key layout to ours is a pure function (:func:`convert_state_dict`) and
every key is accounted for: a missing or unexpected key is an error unless listed in IGNORABLE_KEYS.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from radseg_edge.errors import CheckpointError
from radseg_edge.models.configs import CONFIGS, TIMM_ARCHS, RadioConfig, TeacherSpec
from radseg_edge.models.heads import mlp2_shape_from_state

#: keys present in released files that the model does not use (documented, not errors).
IGNORABLE_KEYS = (
    re.compile(r"^reg_token$"),  # timm register tokens of the v2 archs: unused once CPE is on
    re.compile(r"^(head|fc_norm)\.(weight|bias)$"),  # classifier leftovers (replaced by identity)
    re.compile(r"^norm\.(weight|bias)$"),  # final norm when model_norm is off (RADIO replaces it by identity)
    re.compile(r"^summary_idxs$"),
)

#: Hugging Face repos whose remote code uses align_corners=True in the CPE (RADIO.md, step 3).
HF_ALIGN_CORNERS_TRUE = ("nvidia/C-RADIOv3-B", "nvidia/C-RADIOv3-H")


def _safe_torch_load(path: Path) -> Any:
    """torch.load with weights_only=True, admitting argparse.Namespace; clear errors for everything else."""
    try:
        add = getattr(torch.serialization, "safe_globals", None)
        if add is not None:
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals([argparse.Namespace])  # torch 2.4
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        found = re.search(r"(?:Unsupported global|GLOBAL)[:\s]+(?:GLOBAL\s+)?([\w.]+)", msg)
        what = f" ({found.group(1)})" if found else ""
        if "Unsupported global" in msg or "GLOBAL" in msg or "not an allowed global" in msg:
            raise CheckpointError(
                f"{path}: the file asks to unpickle a disallowed object{what}; radseg-edge never executes code "
                "from checkpoints. Use an official RADIO/SAM file or convert it to safetensors."
            ) from None
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt file, or another format)"
        ) from None
    except Exception as exc:  # zip/EOF/format errors of a truncated or foreign file
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint file ({_reading_failure(exc)}); "
                              "download it again.") from None


def _reading_failure(exc: Exception) -> str:
    """A short, whole phrase for why torch.load failed (torch's own messages run to hundreds of characters)."""
    text = str(exc)
    if "central directory" in text or "zip archive" in text:
        return "its zip archive is incomplete"
    if isinstance(exc, EOFError) or "EOF" in text:
        return "the file ends early"
    if isinstance(exc, MemoryError):
        return "it claims more memory than is available"
    return f"torch.load failed with {type(exc).__name__}"


def _namespace_dict(args: Any) -> dict[str, Any]:
    if isinstance(args, argparse.Namespace):
        return vars(args)
    if isinstance(args, dict):
        return dict(args)
    raise CheckpointError(f"checkpoint 'args' should be an argparse.Namespace or dict, found {type(args).__name__}")


def read_pth(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(args, state_dict) of an official ``.pth.tar`` (``state_dict_ema`` wins). Tensors upcast to fp32."""
    obj = _safe_torch_load(path)
    if not isinstance(obj, dict) or not ({"state_dict", "state_dict_ema"} & set(obj)):
        kind = type(obj).__name__ if not isinstance(obj, dict) else f"dict with keys {sorted(obj)[:6]}"
        raise CheckpointError(f"{path}: not a RADIO checkpoint (expected a dict with 'args' and 'state_dict', found {kind})")
    if "args" not in obj:
        raise CheckpointError(f"{path}: RADIO checkpoint without 'args'; cannot tell its architecture")
    state = obj.get("state_dict_ema") or obj["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of names to tensors")
    state = {k.removeprefix("module."): v.float() if v.is_floating_point() else v for k, v in state.items()}
    return _namespace_dict(obj["args"]), realize_parametrizations(state)


def read_hf_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any]]:
    """(args, state_dict in the .pth.tar key layout, config.json) of a Hugging Face RADIO folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder}: no config.json; expected a Hugging Face RADIO folder (config.json + *.safetensors)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({exc})") from None
    args = config.get("args")
    if not isinstance(args, dict):
        raise CheckpointError(f"{cfg_path}: no 'args' object; not a RADIO config")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors weights found")
    raw: dict[str, Tensor] = {}
    for f in files:
        try:
            raw.update(load_file(str(f)))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{f}: truncated or corrupt safetensors file ({exc})") from None
    state: dict[str, Tensor] = {}
    for k, v in raw.items():
        v = v.float() if v.is_floating_point() else v
        if k.startswith("radio_model.model."):
            state["base_model." + k.removeprefix("radio_model.model.")] = v
        elif k.startswith("radio_model.input_conditioner."):
            state["input_conditioner." + k.removeprefix("radio_model.input_conditioner.")] = v
        elif k.startswith("radio_model.adaptors."):
            name, rest = k.removeprefix("radio_model.adaptors.").split(".", 1)
            which = "_heads" if rest.startswith("head_mlp.") else "_feature_projections"
            state[f"{which}.{name}." + rest.split(".", 1)[1]] = v
        elif k.startswith("radio_model.") and k.removeprefix("radio_model.").startswith("_feature_normalizer."):
            state[k.removeprefix("radio_model.")] = v
        elif k.startswith("radio_model."):
            state[k.removeprefix("radio_model.")] = v
        else:
            state[k] = v
    return args, realize_parametrizations(state), config


def realize_parametrizations(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Turn identity parametrizations (``X.parametrizations.weight.original``, e.g. DAMP) into plain weights.

    Spectral-norm style parametrizations carry extra state (``.parametrizations.weight.0.*``); realizing them
    needs RADIO's exact reparametrization, so they are refused with a clear error.
    """
    extra = [k for k in state if re.search(r"\.parametrizations\.weight\.\d+\.", k)]
    if extra:
        raise CheckpointError(
            f"checkpoint holds spectral-reparametrized weights ({extra[0]}, ...); radseg-edge loads realized "
            "weights only: use the released checkpoint (its 'state_dict_ema' holds plain weights)"
        )
    out = {}
    for k, v in state.items():
        out[k.replace(".parametrizations.weight.original", ".weight")] = v
    return out


def teachers_from_args(args: dict[str, Any], state: dict[str, Tensor]) -> tuple[TeacherSpec, ...]:
    teachers = args.get("teachers") or []
    out = []
    for t in teachers:
        if not isinstance(t, dict) or "name" not in t:
            raise CheckpointError(f"checkpoint args.teachers entries must be dicts with a 'name', found {t!r}")
        out.append(
            TeacherSpec(
                name=str(t["name"]),
                type=str(t.get("type", "")),
                model=str(t.get("model", "")),
                use_summary=bool(t.get("use_summary", True)),
            )
        )
    return tuple(out)


def _head_prefix(state: dict[str, Tensor], group: str, index: int, name: str) -> str | None:
    """Key prefix of a head stored by teacher index or by name (``_heads.1.`` never matches ``_heads.10.``)."""
    for key in (f"{group}.{index}.", f"{group}.{name}."):
        if any(k.startswith(key) for k in state):
            return key
    return None


def _num_heads(args: dict[str, Any], dim: int, depth: int, mlp_hidden: int) -> int:
    """Attention heads of a checkpoint, checked against its tensors (the qkv weights do not reveal them).

    In order: ``args.model_kwargs.num_heads``; the head count of the architecture ``args.model`` names when
    its width and depth are those of the tensors; the one head count of the known configurations with the
    tensors' width, depth and MLP width; 64-wide heads when ``args.model`` names no known architecture.
    Raises:
        CheckpointError: ``args.model`` names an architecture of another size and the tensors match no
            known configuration (a wrong head count would run and give wrong probabilities).
    """
    kwargs = args.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"checkpoint args.model_kwargs should be a dict, found {type(kwargs).__name__}")
    model = str(args.get("model", ""))
    arch = {**TIMM_ARCHS.get(model, {}), **kwargs}
    if "num_heads" in kwargs:
        heads, source = kwargs["num_heads"], "args.model_kwargs.num_heads"
    elif "num_heads" in arch and arch.get("embed_dim") == dim and arch.get("depth", depth) == depth:
        heads, source = arch["num_heads"], f"args.model ({model})"
    else:
        known = {c.num_heads for c in CONFIGS.values() if (c.embed_dim, c.depth, c.mlp_hidden) == (dim, depth, mlp_hidden)}
        known |= {a["num_heads"] for a in TIMM_ARCHS.values()
                  if (a["embed_dim"], a["depth"], a["mlp_hidden"]) == (dim, depth, mlp_hidden)}
        if len(known) == 1:
            heads, source = known.pop(), f"the known configuration of width {dim}, depth {depth}"
        elif model in TIMM_ARCHS:
            a = TIMM_ARCHS[model]
            raise CheckpointError(
                f"checkpoint args.model is {model} ({a['embed_dim']} wide, {a['depth']} blocks, {a['num_heads']} heads) "
                f"but its tensors are {dim} wide with {depth} blocks, and no model_kwargs give the head count; "
                "add args.model_kwargs = {'num_heads': N} to the checkpoint"
            )
        else:
            heads, source = max(dim // 64, 1), "64-wide heads (no architecture named)"
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or dim % heads:
        raise CheckpointError(f"{source} gives {heads!r} attention heads, which do not divide the width {dim} of the "
                              "checkpoint's tensors; fix args.model_kwargs.num_heads")
    return heads


def config_from_checkpoint(
    args: dict[str, Any], state: dict[str, Tensor], name: str, align_corners: bool
) -> RadioConfig:
    """Architecture from ``args`` and the tensors' shapes."""
    try:
        w = state["base_model.patch_generator.embedder.weight"]
        pos = state["base_model.patch_generator.pos_embed"]
        tok = state["base_model.patch_generator.cls_token.token"]
    except KeyError as exc:
        raise CheckpointError(f"not a RADIO (CPE ViT) checkpoint: missing {exc.args[0]}") from None
    dim = int(w.shape[0])
    patch = int(round((w.shape[1] / 3) ** 0.5))
    if 3 * patch * patch != w.shape[1]:
        raise CheckpointError(f"patch embedder has {w.shape[1]} inputs, not 3 x p x p")
    grid = int(round(pos.shape[1] ** 0.5))
    if grid * grid != pos.shape[1] or pos.shape[-1] != dim:
        raise CheckpointError(f"pos_embed has shape {tuple(pos.shape)}; expected 1 x G*G x {dim}")
    depth = 0
    while f"base_model.blocks.{depth}.attn.qkv.weight" in state:
        depth += 1
    if depth == 0:
        raise CheckpointError("checkpoint has no transformer blocks (base_model.blocks.*)")
    num_heads = _num_heads(args, dim, depth, int(state["base_model.blocks.0.mlp.fc1.weight"].shape[0]))
    layer_scale = any(k.startswith("base_model.blocks.0.ls1.") for k in state)
    teachers = teachers_from_args(args, state)
    distinct = list(dict.fromkeys(t.name for t in teachers))
    num_cls = len(distinct) if args.get("cls_token_per_teacher", True) and distinct else 1
    num_tokens = int(tok.shape[0])
    if num_tokens < num_cls:
        raise CheckpointError(f"cls_token table has {num_tokens} rows, fewer than the {num_cls} teachers")
    # widths of the heads, from the tensors
    specs = []
    for i, t in enumerate(teachers):
        sp = _head_prefix(state, "_heads", i, t.name)
        fp = _head_prefix(state, "_feature_projections", i, t.name)
        sdim = mlp2_shape_from_state(state, sp)[2] if sp else 0
        fdim = mlp2_shape_from_state(state, fp)[2] if fp else 0
        specs.append(TeacherSpec(t.name, t.type, t.model, t.use_summary, sdim, fdim))
    return RadioConfig(
        name=name,
        embed_dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_hidden=int(state["base_model.blocks.0.mlp.fc1.weight"].shape[0]),
        patch_size=patch,
        num_cls_tokens=num_cls,
        num_registers=num_tokens - num_cls,
        layer_scale=layer_scale,
        cpe_grid=grid,
        align_corners=align_corners,
        model_norm=bool(args.get("model_norm", False)),
        teachers=tuple(specs),
    )


def convert_state_dict(
    state: dict[str, Tensor], config: RadioConfig, adaptors: list[str]
) -> tuple[dict[str, Tensor], dict[str, tuple]]:
    """Map a RADIO state dict (``.pth.tar`` layout) to ours.

    Returns:
        (our state dict, adaptor shapes {teacher: (summary MLP2 shape, feature MLP2 shape or None)}).
    Raises:
        CheckpointError for keys that are neither used nor documented as ignorable.
    """
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str) -> None:
        out[dst] = state[src]
        used.add(src)

    for k in list(state):
        if k.startswith("base_model.blocks."):
            dst = k.removeprefix("base_model.").replace(".grandma", ".gamma")
            take(k, dst)
    take("base_model.patch_generator.embedder.weight", "patch_embed.weight")
    take("base_model.patch_generator.pos_embed", "pos_embed")
    take("base_model.patch_generator.cls_token.token", "prefix_tokens")
    if config.model_norm:
        for p in ("weight", "bias"):
            if f"base_model.norm.{p}" in state:
                take(f"base_model.norm.{p}", f"norm.{p}")
    for src, dst in (("input_conditioner.norm_mean", "conditioner.mean"), ("input_conditioner.norm_std", "conditioner.std")):
        if src in state:
            out[dst] = state[src].reshape(3, 1, 1)
            used.add(src)
    for p in ("mean", "tx"):
        if f"_feature_normalizer.{p}" in state:
            take(f"_feature_normalizer.{p}", f"feature_normalizer.{p}")

    shapes: dict[str, tuple] = {}
    names = [t.name for t in config.teachers]
    for i, name in enumerate(names):
        sp = _head_prefix(state, "_heads", i, name)
        fp = _head_prefix(state, "_feature_projections", i, name)
        head_keys = [k for k in state if (sp and k.startswith(sp)) or (fp and k.startswith(fp))]
        if name not in adaptors or name in shapes:
            used.update(head_keys)  # heads not requested are skipped on purpose
            continue
        if sp is None:
            raise CheckpointError(f"adaptor '{name}' requested but the checkpoint has no summary head for it")
        shapes[name] = (mlp2_shape_from_state(state, sp), mlp2_shape_from_state(state, fp) if fp else None)
        for k in head_keys:
            if k.startswith(sp):
                take(k, f"heads.{name}.summary_head.{k.removeprefix(sp)}")
            else:
                take(k, f"heads.{name}.feature_head.{k.removeprefix(fp)}")
    missing_adaptors = [a for a in adaptors if a not in shapes]
    if missing_adaptors:
        raise CheckpointError(f"adaptor(s) {missing_adaptors} not in this checkpoint; it has teachers {names}")

    unexpected = []
    for k in state:
        if k in used:
            continue
        bare = k.removeprefix("base_model.")
        if any(p.match(bare) for p in IGNORABLE_KEYS):
            continue
        unexpected.append(k)
    if unexpected:
        raise CheckpointError(
            f"checkpoint has {len(unexpected)} unexpected key(s) the model would silently drop: "
            f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}"
        )
    return out, shapes


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()

