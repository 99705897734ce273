"""Accuracy gate: an exported or quantized model is compared with the fp32 PyTorch pipeline.

For each sample image both pipelines give labels (1 x H x W) and probabilities (1 x K x H x W); the gate
measures label agreement (fraction of equal pixels), probability error (max and mean absolute) and,
when both sides expose them, feature cosine similarity. Thresholds are options with defaults per
precision; a failing model is refused with :class:`EngineError` (or only warned about with ``force``).
The figures go into the export manifest.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from radseg_edge.errors import EngineError

#: what a pipeline returns for one image: (labels 1 x H x W int, probs 1 x K x H x W float[, features])
PipelineOutput = tuple


@dataclass(frozen=True)
class GateThresholds:
    """Limits a candidate must meet (None: not checked)."""

    min_label_agreement: float = 0.999
    max_prob_error: float | None = 1e-4
    min_feature_cosine: float | None = None


#: default limits per precision (fp32 is round-off only; fp16/int8 are lossy by design).
DEFAULT_THRESHOLDS = {
    "fp32": GateThresholds(min_label_agreement=0.999, max_prob_error=1e-4, min_feature_cosine=0.9999),
    "fp16": GateThresholds(min_label_agreement=0.98, max_prob_error=0.1, min_feature_cosine=0.999),
    "int8": GateThresholds(min_label_agreement=0.90, max_prob_error=None, min_feature_cosine=0.99),
}


@dataclass(frozen=True)
class GateReport:
    """Figures over all sample images (pixels pooled)."""

    num_images: int
    label_agreement: float
    max_prob_error: float
    mean_prob_error: float
    feature_cosine: float | None

    def failures(self, thresholds: GateThresholds) -> list[str]:
        """One sentence per violated threshold (empty: the gate passes)."""
        out = []
        if self.label_agreement < thresholds.min_label_agreement:
            out.append(f"label agreement {self.label_agreement:.4%} < {thresholds.min_label_agreement:.4%}")
        if thresholds.max_prob_error is not None and self.max_prob_error > thresholds.max_prob_error:
            out.append(f"max probability error {self.max_prob_error:.3g} > {thresholds.max_prob_error:.3g}")
        if (
            thresholds.min_feature_cosine is not None
            and self.feature_cosine is not None
            and self.feature_cosine < thresholds.min_feature_cosine
        ):
            out.append(f"feature cosine {self.feature_cosine:.5f} < {thresholds.min_feature_cosine:.5f}")
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def feature_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean cosine similarity of per-position feature vectors (channel axis 1): B x C x ... arrays."""
    ref = _np(reference).astype(np.float64)
    cand = _np(candidate).astype(np.float64)
    ref = np.moveaxis(ref, 1, -1).reshape(-1, ref.shape[1])
    cand = np.moveaxis(cand, 1, -1).reshape(-1, cand.shape[1])
    num = (ref * cand).sum(-1)
    den = np.linalg.norm(ref, axis=-1) * np.linalg.norm(cand, axis=-1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def compare(
    reference: Callable[[np.ndarray], PipelineOutput],
    candidate: Callable[[np.ndarray], PipelineOutput],
    images: Iterable[np.ndarray],
    progress: bool = False,
) -> GateReport:
    """Run both pipelines on every image and pool the figures.

    Args:
        reference, candidate: image (H x W x 3 uint8 RGB) -> (labels, probs) or (labels, probs, features).
        images: sample images (e.g. the calibration folder).
    """
    images = list(images)
    if not images:
        raise EngineError("the accuracy gate needs at least one sample image")
    if progress:
        from tqdm import tqdm

        images = tqdm(images, desc="accuracy gate", unit="image")
    equal = total = 0
    max_err = 0.0
    sum_err = 0.0
    count_err = 0
    cosines = []
    n = 0
    for image in images:
        ref = reference(image)
        cand = candidate(image)
        ref_labels, cand_labels = _np(ref[0]), _np(cand[0])
        ref_probs, cand_probs = _np(ref[1]).astype(np.float64), _np(cand[1]).astype(np.float64)
        if ref_labels.shape != cand_labels.shape or ref_probs.shape != cand_probs.shape:
            raise EngineError(
                f"the exported model's outputs have shapes {cand_labels.shape}/{cand_probs.shape}, the PyTorch "
                f"pipeline's {ref_labels.shape}/{ref_probs.shape}: they are not the same model configuration"
            )
        equal += int((ref_labels == cand_labels).sum())
        total += ref_labels.size
        err = np.abs(ref_probs - cand_probs)
        max_err = max(max_err, float(err.max()))
        sum_err += float(err.sum())
        count_err += err.size
        if len(ref) > 2 and len(cand) > 2 and ref[2] is not None and cand[2] is not None:
            cosines.append(feature_cosine(ref[2], cand[2]))
        n += 1
    return GateReport(
        num_images=n,
        label_agreement=equal / max(total, 1),
        max_prob_error=max_err,
        mean_prob_error=sum_err / max(count_err, 1),
        feature_cosine=float(np.mean(cosines)) if cosines else None,
    )


def enforce(report: GateReport, thresholds: GateThresholds, what: str = "the exported model", force: bool = False) -> None:
    """Refuse (EngineError) or, with ``force``, warn when ``report`` violates ``thresholds``."""
    failures = report.failures(thresholds)
    if not failures:
        return
    message = (
        f"accuracy gate failed for {what} on {report.num_images} image(s): " + "; ".join(failures)
    )
    if force:
        warnings.warn(message + " (kept because of --force)", stacklevel=2)
        return
    raise EngineError(message + ". Use --force to keep it anyway, or loosen the thresholds.")
