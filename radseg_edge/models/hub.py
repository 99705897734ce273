"""Downloading checkpoints on the user's machine through huggingface_hub (offline mode honoured)."""

from __future__ import annotations

from pathlib import Path

from radseg_edge.errors import CheckpointError
from radseg_edge.models.configs import RadioConfig


def _hub_error(what: str, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"could not fetch {what} from the Hugging Face Hub ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
        "download it on a connected machine and pass the file path (HF_HUB_OFFLINE=1 uses the local cache only)"
    )


def download_checkpoint(config: RadioConfig) -> tuple[Path, str]:
    """(local path, repo id) of a named model's checkpoint; a progress bar is shown by huggingface_hub."""
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        if config.hf_filename:
            return Path(hf_hub_download(config.hf_repo, config.hf_filename)), config.hf_repo
        folder = snapshot_download(config.hf_repo, allow_patterns=["config.json", "*.safetensors"])
        return Path(folder), config.hf_repo
    except Exception as exc:  # network, auth, offline cache miss
        raise _hub_error(f"{config.hf_repo}/{config.hf_filename or '*.safetensors'}", exc) from None


def download_hf_folder(repo_id: str) -> Path:
    """Local snapshot (config.json + safetensors) of a Hugging Face RADIO repo."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors"]))
    except Exception as exc:
        raise _hub_error(repo_id, exc) from None
