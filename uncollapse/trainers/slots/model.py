"""The slot-attention autoencoder (Locatello et al. 2020, "Object-Centric Learning with Slot
Attention") and its three slot initialisations.

Encoder: ``encoder_layers`` 5x5 convolutions of ``channels`` channels with ReLU at full
resolution, a soft position embedding (a linear map of the pixel's four distances to the image
borders, added to the features), then LayerNorm and a two-layer MLP. Slot attention: slots
compete for the input features by a softmax over slots, are updated with the weighted mean of
the features through a GRU and a residual MLP, ``iterations`` times. Decoder: each slot is
broadcast over the image grid with the position embedding, decoded by 5x5 convolutions into RGB
plus an alpha logit; the alphas are normalised by a softmax over slots (the masks) and the
reconstruction is the mask-weighted sum of the slots' RGB.

Initial slots (``init``):

- ``learned``: ``mu + exp(log_sigma) * noise``, one learned Gaussian shared by the slots.
- ``queries``: one learned vector per slot, no noise (BO-QSA, Jia et al. 2023, "Improving
  Object-centric Learning with Query Optimization"): each slot starts where its own query is.

``implicit``: the slot iterations are run to their fixed point without a gradient, and only
the last one is differentiated (implicit differentiation's first-order approximation, Chang et
al. 2022, "Object Representations as Fixed Points"), with a straight-through path from the
last iteration's input to the initial slots, ``slots.detach() + init - init.detach()``, so the
queries still learn (BO-QSA's bi-level optimisation). It removes the unstable gradient through
the unrolled iterations.
- ``spectral``: the encoder features of each image, subsampled to at most ``SPECTRAL_POINTS``
  grid points, form an affinity graph ``A_ij = exp((cos_ij - 1) / SPECTRAL_TEMPERATURE)``; the
  eigenvectors of the ``slots`` smallest eigenvalues of its normalised Laplacian
  ``I - D^-1/2 A D^-1/2`` (``torch.linalg.eigh`` on the batch ``[B, N, N]``) embed the points,
  k-means in that embedding clusters them, and slot k is the mean feature of cluster k, then a
  learned linear projection.
- ``kmeans``: ``KMEANS_ITERATIONS`` Lloyd iterations on each image's features (batched; the
  first centroids are farthest-point picks), then the same projection.

Spectral and k-means starts are computed without gradient from detached features: the
projection learns, the eigen-solver does not backpropagate (its gradient is unstable when
eigenvalues are close).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from uncollapse.trainers.slots.config import INITS

__all__ = ["SlotAutoencoder", "SlotModelConfig", "kmeans_slots", "spectral_slots"]

SPECTRAL_POINTS = 64
SPECTRAL_TEMPERATURE = 0.1
KMEANS_ITERATIONS = 5


@dataclass
class SlotModelConfig:
    """What ``SlotAutoencoder`` needs to rebuild the same architecture (stored in checkpoints)."""

    size: int
    slots: int = 5
    slot_dim: int = 64
    iterations: int = 3
    channels: int = 64
    encoder_layers: int = 4
    decoder_layers: int = 3
    mlp_hidden: int = 128
    init: str = "learned"
    implicit: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def position_grid(size: int, device=None) -> torch.Tensor:
    """[size, size, 4]: each pixel's (y, x, 1 - y, 1 - x) in [0, 1]."""
    ticks = torch.linspace(0.0, 1.0, size, device=device)
    y, x = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([y, x, 1 - y, 1 - x], dim=-1)


class SoftPositionEmbed(nn.Module):
    """Adds a linear map of the position grid to features laid out [B, H, W, C]."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.proj = nn.Linear(4, channels)
        self.register_buffer("grid", position_grid(size), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.proj(self.grid)


def _convs(first: int, channels: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Conv2d(first if i == 0 else channels, channels, 5, padding=2), nn.ReLU()]
    return nn.Sequential(*modules)


class SlotAttention(nn.Module):
    """Iterative slot attention with a GRU update and a residual MLP."""

    def __init__(self, dim: int, iterations: int, hidden: int, eps: float = 1e-8):
        super().__init__()
        self.iterations, self.eps, self.scale = iterations, eps, dim ** -0.5
        self.norm_inputs, self.norm_slots, self.norm_mlp = (nn.LayerNorm(dim), nn.LayerNorm(dim),
                                                            nn.LayerNorm(dim))
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, inputs: torch.Tensor, slots: torch.Tensor, implicit: bool = False):
        """inputs [B, N, D], slots [B, K, D] -> (slots [B, K, D], attention [B, K, N]).

        ``implicit``: iterations but the last without gradient, the last one's input
        ``slots.detach() + init - init.detach()`` (see the module)."""
        inputs = self.norm_inputs(inputs)
        k, v = self.k(inputs), self.v(inputs)
        if not implicit:
            for _ in range(self.iterations):
                slots, attention = self.iterate(slots, k, v)
            return slots, attention
        initial = slots
        with torch.no_grad():
            for _ in range(self.iterations - 1):
                slots, _ = self.iterate(slots, k.detach(), v.detach())
        return self.iterate(slots.detach() + initial - initial.detach(), k, v)

    def iterate(self, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """One round: slots compete for the inputs, then the GRU and the residual MLP."""
        batch, count, dim = slots.shape
        q = self.q(self.norm_slots(slots))
        attention = torch.softmax(torch.einsum("bkd,bnd->bkn", q, k) * self.scale, dim=1)
        weights = (attention + self.eps)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        updates = torch.einsum("bkn,bnd->bkd", weights, v)
        slots = self.gru(updates.reshape(-1, dim), slots.reshape(-1, dim))
        slots = slots.reshape(batch, count, dim)
        return slots + self.mlp(self.norm_mlp(slots)), attention


def spectral_slots(features: torch.Tensor, count: int) -> torch.Tensor:
    """[B, N, D] features -> [B, count, D] means of the features of each spectral cluster.

    Spectral clustering (Ng, Jordan & Weiss 2001) of a subsampled feature grid: the rows of the
    ``count`` leading eigenvectors of the normalised affinity, scaled to unit length, embed each
    point; k-means in that embedding assigns the points to slots (so neither the eigenvectors'
    signs nor a rotation within a repeated eigenvalue matter).
    """
    stride = max(1, math.ceil(features.shape[1] / SPECTRAL_POINTS))
    points = features[:, ::stride].float()
    unit = F.normalize(points, dim=-1)
    affinity = torch.exp((unit @ unit.transpose(1, 2) - 1) / SPECTRAL_TEMPERATURE)
    inv_sqrt = affinity.sum(-1).rsqrt()
    normalised = inv_sqrt[:, :, None] * affinity * inv_sqrt[:, None, :]
    eye = torch.eye(points.shape[1], device=features.device)
    # eigh sorts eigenvalues ascending: the first are the Laplacian's smallest
    _, vectors = torch.linalg.eigh(eye - normalised)
    embedding = F.normalize(vectors[:, :, :count], dim=-1)             # [B, N', count]
    _, assign = _lloyd(embedding, count, KMEANS_ITERATIONS)
    return _cluster_means(points, assign, count, fallback=points.mean(dim=1, keepdim=True))


def kmeans_slots(features: torch.Tensor, count: int,
                 iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """[B, N, D] features -> [B, count, D] centroids of batched Lloyd iterations."""
    centroids, _ = _lloyd(features.float(), count, iterations)
    return centroids


def _lloyd(points: torch.Tensor, count: int, iterations: int):
    """Batched k-means of [B, N, D] points; the first centroids are farthest-point picks
    (deterministic: the first point, then each time the point farthest from those chosen)."""
    batch, n, _ = points.shape
    rows = torch.arange(batch, device=points.device)
    chosen = torch.zeros(batch, dtype=torch.long, device=points.device)
    centroids = [points[rows, chosen]]
    distance = (points - centroids[0][:, None]).pow(2).sum(-1)
    for _ in range(1, count):
        chosen = distance.argmax(dim=1)
        centroids.append(points[rows, chosen])
        distance = torch.minimum(distance, (points - centroids[-1][:, None]).pow(2).sum(-1))
    centroid = torch.stack(centroids, dim=1)                            # [B, K, D]
    assign = torch.cdist(points, centroid).argmin(dim=-1)
    for _ in range(iterations):
        centroid = _cluster_means(points, assign, count, fallback=centroid)
        assign = torch.cdist(points, centroid).argmin(dim=-1)          # [B, N]
    return centroid, assign


def _cluster_means(points: torch.Tensor, assign: torch.Tensor, count: int,
                   fallback: torch.Tensor) -> torch.Tensor:
    """Mean of the points of each cluster; an empty cluster keeps ``fallback``."""
    onehot = F.one_hot(assign, count).to(points.dtype)                 # [B, N, K]
    sizes = onehot.sum(dim=1)[..., None]                               # [B, K, 1]
    means = onehot.transpose(1, 2) @ points / sizes.clamp_min(1)
    return torch.where(sizes > 0, means, fallback.expand_as(means))


class SlotAutoencoder(nn.Module):
    """Images [B, 3, H, W] in [-1, 1] -> reconstruction, per-slot masks and slots."""

    def __init__(self, config: SlotModelConfig):
        super().__init__()
        if config.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {config.init!r}")
        self.config = c = config
        self.encoder = _convs(3, c.channels, c.encoder_layers)
        self.encoder_position = SoftPositionEmbed(c.channels, c.size)
        self.encoder_mlp = nn.Sequential(nn.LayerNorm(c.channels),
                                         nn.Linear(c.channels, c.slot_dim), nn.ReLU(),
                                         nn.Linear(c.slot_dim, c.slot_dim))
        self.slot_attention = SlotAttention(c.slot_dim, c.iterations, c.mlp_hidden)
        self.slots_mu = nn.Parameter(torch.randn(1, 1, c.slot_dim) * c.slot_dim ** -0.5)
        self.slots_log_sigma = nn.Parameter(torch.full((1, 1, c.slot_dim), math.log(0.1)))
        if c.init == "queries":
            self.slot_queries = nn.Parameter(torch.randn(1, c.slots, c.slot_dim)
                                             * c.slot_dim ** -0.5)
        self.init_projection = nn.Linear(c.slot_dim, c.slot_dim)
        self.decoder_position = SoftPositionEmbed(c.slot_dim, c.size)
        self.decoder = nn.Sequential(_convs(c.slot_dim, c.channels, c.decoder_layers),
                                     nn.Conv2d(c.channels, 4, 3, padding=1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, H*W, slot_dim]."""
        x = self.encoder(images).permute(0, 2, 3, 1)
        x = self.encoder_position(x)
        return self.encoder_mlp(x.flatten(1, 2))

    def initial_slots(self, features: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.init == "learned":
            noise = torch.randn(features.shape[0], c.slots, c.slot_dim, device=features.device,
                                dtype=self.slots_mu.dtype)
            return self.slots_mu + self.slots_log_sigma.exp() * noise
        if c.init == "queries":
            return self.slot_queries.expand(features.shape[0], -1, -1)
        with torch.no_grad(), torch.autocast(features.device.type, enabled=False):
            detached = features.detach().float()
            start = (spectral_slots(detached, c.slots) if c.init == "spectral"
                     else kmeans_slots(detached, c.slots))
        return self.init_projection(start)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        batch, _, height, width = images.shape
        features = self.features(images)
        initial = self.initial_slots(features)
        slots, attention = self.slot_attention(features, initial, implicit=c.implicit)
        grid = slots.reshape(-1, 1, 1, c.slot_dim).expand(-1, height, width, -1)
        decoded = self.decoder(self.decoder_position(grid).permute(0, 3, 1, 2))
        decoded = decoded.reshape(batch, c.slots, 4, height, width)
        rgb, alpha = decoded[:, :, :3], decoded[:, :, 3]
        masks = torch.softmax(alpha.float(), dim=1)                   # [B, K, H, W]
        recon = (masks[:, :, None] * rgb.float()).sum(dim=1)         # [B, 3, H, W]
        return {"recon": recon, "masks": masks, "slots": slots, "initial_slots": initial,
                "attention": attention}
