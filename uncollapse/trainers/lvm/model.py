"""Next-vector models: a sequence backbone over the context vectors and a two-layer head.

Backbones (``arch``): ``gru``, ``lstm``, ``transformer`` (pre-norm encoder over the context with
learned positions, read at the last position) and ``ssm``, a Mamba-style selective state-space
block written in plain torch (Gu & Dao 2023: input-dependent step size, B and C; a depthwise
causal convolution; a gated output). The ``mamba-ssm`` package's fused kernel needs a CUDA build
and is not used; contexts here are a few vectors long, so the scan is a short loop over them.

Head: linear, GELU, LayerNorm, linear, giving ``y_dec`` in the targets' raw scale, plus a skip
from the context (``residual``: the context mean, the last context vector, a learned weighting
of the context vectors that starts at their mean, or none), so the model starts from a strong
baseline and learns the correction; ``y_cos`` is ``y_dec`` L2-normalised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from uncollapse.trainers.lvm.config import ARCHS, RESIDUALS

__all__ = ["LVMModelConfig", "NextVectorModel"]


@dataclass
class LVMModelConfig:
    dim: int
    context_length: int
    arch: str = "gru"
    hidden: int = 512
    layers: int = 2
    heads: int = 8
    dropout: float = 0.1
    residual: str = "mean"

    def to_dict(self) -> dict:
        return asdict(self)


class SelectiveSSM(nn.Module):
    """One Mamba-style selective SSM layer on [B, L, H] (pure torch, sequential scan over L)."""

    def __init__(self, hidden: int, state: int = 16, expand: int = 2, conv: int = 4):
        super().__init__()
        inner = expand * hidden
        self.rank = max(1, hidden // 16)
        self.in_proj = nn.Linear(hidden, 2 * inner)
        self.conv = nn.Conv1d(inner, inner, conv, padding=conv - 1, groups=inner)
        self.x_proj = nn.Linear(inner, self.rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32))
                                  .repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, hidden)
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, gate = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2))
        dt, b, c = self.x_proj(u).split([self.rank, self.state, self.state], dim=-1)
        dt = F.softplus(self.dt_proj(dt)).float()                # [B, L, inner]
        a = -torch.exp(self.A_log.float())                        # [inner, N]
        h = u.new_zeros(u.shape[0], u.shape[2], self.state, dtype=torch.float32)
        outputs = []
        for t in range(length):
            decay = torch.exp(dt[:, t, :, None] * a)
            h = decay * h + dt[:, t, :, None] * b[:, t, None, :].float() * u[:, t, :, None].float()
            outputs.append((h * c[:, t, None, :].float()).sum(-1))
        y = torch.stack(outputs, dim=1).to(u.dtype) + self.D * u
        return self.out_proj(y * F.silu(gate))


class SSMBackbone(nn.Module):
    def __init__(self, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(SelectiveSSM(hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for norm, block in zip(self.norms, self.blocks, strict=True):
            x = x + self.dropout(block(norm(x)))
        return x[:, -1]


class RNNBackbone(nn.Module):
    def __init__(self, kind: str, hidden: int, layers: int, dropout: float):
        super().__init__()
        cls = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = cls(hidden, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return rnn_unrolled(self.rnn, x)
        return self.rnn(x)[0][:, -1]


def rnn_unrolled(rnn: nn.GRU | nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The last step's output of ``rnn`` (batch first, zero initial state), computed with
    ``nn.GRU``'s or ``nn.LSTM``'s own equations and parameters as plain tensor operations.

    Used inside ``torch.compile``, which fuses them: cuDNN's RNNs are opaque to the compiler
    (Dynamo refuses them), and the GRU's backward alone took 40% of an H100 training step at
    batch 8,192 (BENCHMARKS.md, "The data path costs next to nothing"). The same parameters
    give the same outputs, so checkpoints move freely between the two.
    """
    cell = _gru_cell if isinstance(rnn, nn.GRU) else _lstm_cell
    layers, steps = rnn.num_layers, x.shape[1]
    for k in range(layers):
        inputs = F.linear(x, getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"bias_ih_l{k}"))
        w_hh, b_hh = getattr(rnn, f"weight_hh_l{k}"), getattr(rnn, f"bias_hh_l{k}")
        state = (x.new_zeros(x.shape[0], rnn.hidden_size),) * 2  # h (and the LSTM's c)
        outputs = []
        for t in range(steps):
            state = cell(inputs[:, t], F.linear(state[0], w_hh, b_hh), state)
            outputs.append(state[0])
        if k == layers - 1:
            return state[0]
        x = F.dropout(torch.stack(outputs, dim=1), rnn.dropout, training=rnn.training)
    raise AssertionError("an RNN has at least one layer")


def _gru_cell(inputs: torch.Tensor, hidden: torch.Tensor, state: tuple) -> tuple:
    i_r, i_z, i_n = inputs.chunk(3, dim=-1)
    h_r, h_z, h_n = hidden.chunk(3, dim=-1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return ((1 - z) * n + z * state[0],)


def _lstm_cell(inputs: torch.Tensor, hidden: torch.Tensor, state: tuple) -> tuple:
    i, f, g, o = (inputs + hidden).chunk(4, dim=-1)
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class TransformerBackbone(nn.Module):
    def __init__(self, hidden: int, layers: int, heads: int, dropout: float, length: int):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, length, hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # right-aligned positions: a shorter context uses the last positions
        x = x + self.position[:, -x.shape[1]:]
        return self.norm(self.encoder(x))[:, -1]


class NextVectorModel(nn.Module):
    """Context vectors [B, C, D] -> ``y_dec`` [B, D] (raw scale); ``y_cos`` is its unit copy."""

    def __init__(self, config: LVMModelConfig):
        super().__init__()
        if config.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {config.arch!r}")
        if config.residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {config.residual!r}")
        self.config = config
        h = config.hidden
        self.embed = nn.Sequential(nn.Linear(config.dim, h), nn.LayerNorm(h))
        if config.arch in ("gru", "lstm"):
            self.backbone = RNNBackbone(config.arch, h, config.layers, config.dropout)
        elif config.arch == "transformer":
            self.backbone = TransformerBackbone(h, config.layers, config.heads, config.dropout,
                                                config.context_length)
        else:
            self.backbone = SSMBackbone(h, config.layers, config.dropout)
        self.head = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h),
                                  nn.Linear(h, config.dim))
        if config.residual == "learned":
            # softmax weights over the context positions, equal at the start (the context mean)
            self.position_logits = nn.Parameter(torch.zeros(config.context_length))
        if config.residual != "none":
            # start exactly at the residual baseline; training learns the correction
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """``y_dec``: the predicted next vector in the targets' raw scale."""
        y = self.head(self.backbone(self.embed(context)))
        if self.config.residual == "mean":
            y = y + context.mean(dim=1)
        elif self.config.residual == "last":
            y = y + context[:, -1]
        elif self.config.residual == "learned":
            weights = torch.softmax(self.position_logits[-context.shape[1]:], dim=0)
            y = y + torch.einsum("c,bcd->bd", weights.to(context.dtype), context)
        return y

    @staticmethod
    def cosine(y_dec: torch.Tensor) -> torch.Tensor:
        """``y_cos``: ``y_dec`` L2-normalised."""
        return F.normalize(y_dec.float(), dim=-1)
