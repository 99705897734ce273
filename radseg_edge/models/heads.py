"""RADIO adaptor heads (MLP v2) and the per-teacher pair of summary / dense-feature heads.

MLP2: fc1 (in -> hidden) -> for each inner block x = x + Linear(GELU(LN(x))) -> LN -> GELU -> Linear(hidden -> out).
LayerNorm eps 1e-5, exact GELU. Sizes come from the checkpoint's tensor shapes.
"""

from __future__ import annotations

from torch import Tensor, nn


class MLP2(nn.Module):
    """The RADIO v2 adaptor MLP; parameter names match the checkpoint (fc1, blocks.k.0/2, final.0/2)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden, eps=1e-5), nn.GELU(), nn.Linear(hidden, hidden)) for _ in range(num_inner)
        )
        self.final = nn.Sequential(nn.LayerNorm(hidden, eps=1e-5), nn.GELU(), nn.Linear(hidden, out_dim))

    @property
    def in_dim(self) -> int:
        return self.fc1.in_features

    @property
    def out_dim(self) -> int:
        return self.final[2].out_features

    def forward(self, x: Tensor) -> Tensor:
        """x: ... x in_dim -> ... x out_dim (applied token by token)."""
        x = self.fc1(x)
        for block in self.blocks:
            x = x + block(x)
        return self.final(x)


def mlp2_shape_from_state(state: dict[str, Tensor], prefix: str) -> tuple[int, int, int, int]:
    """(in_dim, hidden, out_dim, num_inner) of an MLP2 stored under ``prefix`` (e.g. "_heads.1.")."""
    w1 = state[prefix + "fc1.weight"]
    wf = state[prefix + "final.2.weight"]
    inner = 0
    while f"{prefix}blocks.{inner}.2.weight" in state:
        inner += 1
    return int(w1.shape[1]), int(w1.shape[0]), int(wf.shape[0]), inner


class AdaptorHead(nn.Module):
    """The two heads of one teacher: ``summary_head`` (on its cls token) and ``feature_head`` (per patch)."""

    def __init__(self, name: str, summary_head: MLP2, feature_head: MLP2 | None) -> None:
        super().__init__()
        self.name = name
        self.summary_head = summary_head
        self.feature_head = feature_head
