"""Prismatic's fused-backbone projector (fc1 -> GELU -> fc2 -> GELU -> fc3) and OFT's proprio projector."""

from __future__ import annotations

import torch
from torch import nn


class FusedMLPProjector(nn.Module):
    """`projector.fc1/fc2/fc3`: vision_dim -> 4*vision_dim -> llm_dim -> llm_dim."""

    def __init__(self, vision_dim: int, llm_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim, bias=True)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim, bias=True)
        self.fc3 = nn.Linear(llm_dim, llm_dim, bias=True)
        self.act_fn1 = nn.GELU()
        self.act_fn2 = nn.GELU()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(patches)))))


class ProprioProjector(nn.Module):
    """`proprio_projector.fc1/fc2`: normalised proprio `[B, proprio_dim]` -> one LLM token `[B, llm_dim]`."""

    def __init__(self, proprio_dim: int, llm_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim, bias=True)
        self.fc2 = nn.Linear(llm_dim, llm_dim, bias=True)
        self.act_fn1 = nn.GELU()

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act_fn1(self.fc1(proprio)))
