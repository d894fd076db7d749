"""The attribute-flow recipe: a vector field that moves frozen embeddings to target attributes.

Inputs: ``.npy`` embeddings [rows, D] (e.g. CLIP image embeddings of faces), row ``i`` described
by row ``i`` of an attribute table (Parquet, read with pyarrow). A field ``v(z, a)`` (an MLP over
the embedding and the target attributes) moves ``z`` in ``flow_steps`` Euler steps on the
sphere, ``z <- normalize(z + alpha / flow_steps * v(z, a))``, to ``z'``.

Data: ``AttributeFlipDataset`` gives every training row a target that differs from its source in
``min_flips..max_flips`` attributes, drawn per epoch from ``(seed, epoch, row)``; the targets of
an epoch are copied to the device once (``on_epoch``). Real tables have rare combinations (few
women with moustaches): target combinations with fewer than ``per_group`` training rows are
left out of the targets (``FLOW_TARGETS_LEFT_OUT``, a warning naming each with its count; a
flip landing on one is drawn again among its source's allowed flips, and a row with no allowed
target is left out of training). Only when an attribute can then no longer be flipped both ways
(0 to 1 and 1 to 0) does the pre-flight stop (``FLOW_ATTRIBUTE_NOT_FLIPPABLE``). Batches come
from ``GroupedBatchSampler`` over that epoch's target combination ids (``per_group`` rows of
each combination), so the plan of epoch ``e`` is a pure function of ``(seed, e)`` and a resumed
run sees the same batches.

Loss terms (each >= 0, declared to the loss guard):

- ``infonce``: cross-entropy of ``z' . P / temperature`` over prototypes ``P``, the target
  combination's prototype the positive. With ``prototypes="bank"`` (the default, and the fix)
  ``P`` holds the normalised means of the *real* training embeddings of every combination, a
  constant. With ``prototypes="batch"`` they are the means of the flowed batch itself, with
  gradient: prototypes that move with the outputs let each combination's outputs shrink onto
  their own mean, the input forgotten (kept only to show that collapse).
- ``identity``: mean ``|z' - z|^2``, a small pull towards the input.
- ``divergence``: the squared Hutchinson estimate ``(u^T J u)^2`` of the field's divergence at
  the input, ``J = dv/dz``, ``u`` a Rademacher probe (E[u^T J u] = tr J); its expectation is
  div(v)^2 plus the estimator's variance, so it bounds the squared divergence from above.
- ``curl``: ``0.5 |J u - J^T u|^2``, whose expectation over the same probe is
  ``0.5 |J - J^T|_F^2``, the squared norm of the Jacobian's antisymmetric (rotational) part.
  ``J^T u`` is one vector-Jacobian product, ``J u`` the double-vjp trick (the vjp of a vjp);
  both keep their graph so the terms are trained. The probe comes from torch's generator of
  the device, which the engine checkpoints, so a resumed run draws the same probes.

Evaluation on held-out rows with targets drawn once (seed + 1): movement, per-step distance,
silhouette and cluster purity by target combination, attribute-transfer accuracy and
preservation of the unflipped attributes read by linear probes trained on real embeddings, and
nearest-neighbour identity retrieval where the table has identities; the same for the
mean-difference steering baseline ``normalize(z + P[target] - P[source])``. Arrays for
``uncollapse report`` (``projection.npz``): ``trajectory`` [flow_steps + 1, n, D] (the input,
then each Euler step's point), ``pred`` (its last point), ``target`` (each row's target
prototype), ``groups`` (the target combination ids), ``steering`` (the baseline's endpoints),
``prototypes`` with their ``prototype_ids`` (the bank's present combinations) and
``attribute_names`` (bit ``j`` of a combination id is attribute ``j``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uncollapse.data.attributes.contract import (
    IDENTITY,
    SPLIT,
    combination_ids,
    decode_combination_ids,
)
from uncollapse.data.attributes.dataset import AttributeFlipDataset, allowed_flips, flip_masks
from uncollapse.data.attributes.selection import refuse_repeated
from uncollapse.data.attributes.table import read_attribute_arrays
from uncollapse.families import recipe
from uncollapse.report import Code, Finding, Report
from uncollapse.samplers.combinations import TargetCombinationSampler
from uncollapse.trainers.distributed import unwrap
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.flow.model import FlowField
from uncollapse.trainers.gather import global_mean
from uncollapse.trainers.preflight import load_features
from uncollapse.trainers.recipe import Recipe, StepOutput
from uncollapse.validators.attributes.flips import FLIPS_NOT_ALWAYS_APPLIED, audit_flips
from uncollapse.validators.collapse.metrics import cluster_purity, label_spread, silhouette

__all__ = ["FLOW_ATTRIBUTE_NOT_FLIPPABLE", "FLOW_TARGETS_LEFT_OUT", "RECIPE", "FlowRecipe",
           "TargetExclusion", "held_out_rows", "linear_probes", "target_exclusion"]

logger = logging.getLogger("uncollapse")
PROBE_STEPS = 300
NAMED_COMBINATIONS = 16  # rare combinations named in the warning's message (all in its stats)

FLOW_TARGETS_LEFT_OUT = Code(
    "FLOW_TARGETS_LEFT_OUT", "warning",
    "Target combinations with fewer training rows than per_group are left out of the flow's "
    "targets (a flip landing on one is drawn again among the source's other flips; a row with "
    "no allowed target is left out of training). The message names each with its row count.",
    "Nothing, if those combinations may go unlearned; else gather rows for them or lower "
    "--per-group.")
FLOW_ATTRIBUTE_NOT_FLIPPABLE = Code(
    "FLOW_ATTRIBUTE_NOT_FLIPPABLE", "error",
    "With the rare target combinations left out, an attribute can no longer be flipped both "
    "ways (0 to 1 and 1 to 0) within min_flips..max_flips flips of any training row.",
    "Flip other or fewer attributes (--attributes-to-flip), raise --max-flips, lower "
    "--per-group, or gather rows for the rare combinations.")


class TargetExclusion:
    """Which target combinations a flow run leaves out, and what that leaves possible.

    Attributes:
        counts: [2^A] training rows of every combination.
        excluded: combination ids with fewer than ``per_group`` rows (absent ones included).
        kept_rows: [rows] bool, rows with at least one allowed target.
        flippable: [A, 2] bool, attribute j can go 0 -> 1 (column 0) and 1 -> 0 (column 1).
    """

    def __init__(self, source: np.ndarray, per_group: int, min_flips: int, max_flips: int):
        a = source.shape[1]
        ids = combination_ids(source)
        self.counts = np.bincount(ids, minlength=1 << a)
        self.excluded = np.flatnonzero(self.counts < per_group)
        self.kept_rows = np.ones(len(source), dtype=bool)
        self.flippable = np.ones((a, 2), dtype=bool)
        if not len(self.excluded):
            return
        masks = flip_masks(a, min_flips, max_flips)
        sources, inverse = np.unique(ids, return_inverse=True)
        allowed = allowed_flips(sources, masks, self.excluded)          # [U, M]
        stranded = ~allowed.any(axis=1)
        self.kept_rows = ~stranded[inverse]
        flips = decode_combination_ids(masks, a).astype(bool)             # [M, A]
        can_flip = (allowed[:, :, None] & flips[None]).any(axis=1)[~stranded]  # [U', A]
        bits = decode_combination_ids(sources, a)[~stranded]
        self.flippable = np.stack([(can_flip & (bits == 0)).any(axis=0),
                                   (can_flip & (bits == 1)).any(axis=0)], axis=1)


def target_exclusion(source, per_group: int, min_flips: int, max_flips: int) -> TargetExclusion:
    """The ``TargetExclusion`` of training rows' ``source`` attributes [rows, A]."""
    return TargetExclusion(np.asarray(source), per_group, min_flips, max_flips)


def combination_name(combination: int, names: list[str]) -> str:
    """``Male+Mustache``: the attributes set in a combination (``no attribute`` for none)."""
    return "+".join(n for j, n in enumerate(names) if combination >> j & 1) or "no attribute"


def held_out_rows(table: dict, split: str, fraction: float, seed: int) -> np.ndarray:
    """Rows held out for evaluation: the ``split`` rows, else a seeded share of identities
    (of rows where the table has no identities)."""
    splits = table[SPLIT]
    if np.any(splits == split) and not np.all(splits == split):
        return splits == split
    identity = table[IDENTITY]
    rng = np.random.default_rng(seed)
    if all(v is not None for v in identity) and len(identity):
        ids, inverse = np.unique(identity.astype(np.int64), return_inverse=True)
        return (rng.random(len(ids)) < fraction)[inverse]
    return rng.random(len(splits)) < fraction


def linear_probes(x: torch.Tensor, labels: torch.Tensor, steps: int = PROBE_STEPS):
    """One logistic regression per attribute (columns of ``labels``), fitted full-batch with
    Adam from zero weights (deterministic). Returns ``(weight [D, A], bias [A])``."""
    weight = torch.zeros(x.shape[1], labels.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(labels.shape[1], device=x.device, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(x @ weight + bias, labels.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return weight.detach(), bias.detach()


class FlowRecipe(Recipe):
    """A vector field that flows frozen embeddings to target attributes (see the module)."""

    config_class = FlowConfig
    name = "flow"
    lower_bounds = dict(recipe("flow").lower_bounds)  # declared in the recipes table
    unforceable = frozenset({FLIPS_NOT_ALWAYS_APPLIED.name})
    replicated = ("bank", "present")  # the prototypes: the same on every rank

    # data ----------------------------------------------------------------------------------
    def preflight(self) -> Report:
        config = self.config
        names = [n.strip() for n in config.attributes_to_flip.split(",") if n.strip()]
        refuse_repeated(names, "--attributes-to-flip")
        self.table = read_attribute_arrays(config.attributes, names or None)
        n = len(self.table["attributes"])
        self.embeddings = load_features(config.embeddings, n, "embeddings")
        if not 1 <= config.min_flips <= config.max_flips <= len(self.table["names"]):
            raise ValueError(f"max_flips ({config.max_flips}) must be at most the number of "
                             f"attributes flipped ({len(self.table['names'])})")
        held_out = held_out_rows(self.table, config.eval_split, config.eval_fraction, config.seed)
        self.train_rows_np, self.eval_rows_np = np.flatnonzero(~held_out), np.flatnonzero(held_out)
        source = self.table["attributes"][self.train_rows_np]
        exclusion = target_exclusion(source, config.per_group, config.min_flips,
                                     config.max_flips)
        findings = self.exclusion_findings(exclusion)
        self.train_rows_np = self.train_rows_np[exclusion.kept_rows]
        source = source[exclusion.kept_rows]
        self.excluded_targets = exclusion.excluded
        self.dataset = AttributeFlipDataset(np.asarray(self.embeddings)[self.train_rows_np],
                                            source, min_flips=config.min_flips,
                                            max_flips=config.max_flips, seed=config.seed,
                                            attribute_names=self.table["names"],
                                            excluded_targets=exclusion.excluded)
        report = Report(config.attributes, "flow inputs", findings, {
            "rows": n, "train_rows": len(self.train_rows_np),
            "eval_rows": len(self.eval_rows_np), "attributes": self.table["names"],
            "excluded_targets": {combination_name(int(c), self.table["names"]):
                                 int(exclusion.counts[c]) for c in exclusion.excluded}})
        for finding in findings:
            if finding.severity == "warning":
                logger.warning("%s: %s", finding.code, finding.message)
        try:
            # the audit reads the global plan of every rank
            self.sampler = TargetCombinationSampler(self.dataset, config.batch_size,
                                                    config.per_group, seed=config.seed,
                                                    rank=0, world_size=1)
            batches = self.sampler.sampler(0)
        except ValueError as exc:  # too few combinations with per_group rows for one batch
            report.stats["sampler"] = str(exc)
            batches = None
        audit = audit_flips(self.dataset, batches=batches, batch_size=config.batch_size,
                            target=config.attributes)
        report.findings += audit.findings
        report.stats["flips"] = audit.stats
        self.sampler = None
        return report

    def exclusion_findings(self, exclusion: TargetExclusion) -> list[Finding]:
        """The warning naming the target combinations left out (with their training rows), and
        an error for each attribute that can no longer be flipped both ways."""
        names, c = self.table["names"], self.config
        excluded = exclusion.excluded
        if not len(excluded):
            return []
        listed = [f"{combination_name(int(k), names)} ({int(exclusion.counts[k])} rows)"
                  for k in excluded[:NAMED_COMBINATIONS]]
        more = len(excluded) - len(listed)
        dropped = int((~exclusion.kept_rows).sum())
        examples = [{"combination": dict(zip(names, ((k >> np.arange(len(names))) & 1).tolist(),
                                             strict=True)),
                     "rows": int(exclusion.counts[k])} for k in excluded]
        findings = [FLOW_TARGETS_LEFT_OUT.finding(
            f"{len(excluded)} of {1 << len(names)} target combinations of {names} have fewer "
            f"than per_group ({c.per_group}) training rows and are left out of the targets: "
            + ", ".join(listed) + (f" and {more} more" if more else "")
            + (f"; {dropped} training rows with no other target within "
               f"{c.min_flips}..{c.max_flips} flips are left out of training" if dropped
               else ""),
            count=len(excluded), examples=examples)]
        for j, (up, down) in enumerate(exclusion.flippable):
            if up and down:
                continue
            ways = " nor ".join(w for w, ok in (("0 -> 1", up), ("1 -> 0", down)) if not ok)
            findings.append(FLOW_ATTRIBUTE_NOT_FLIPPABLE.finding(
                f"attribute {names[j]!r} can no longer be flipped {ways} within "
                f"{c.min_flips}..{c.max_flips} flips: every such target is one of the "
                f"combinations left out (fewer than per_group ({c.per_group}) rows)",
                examples=[{"attribute": names[j], "zero_to_one": bool(up),
                           "one_to_zero": bool(down)}]))
        return findings

    def setup(self) -> None:
        config, device = self.config, self.device
        embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.z = F.normalize(torch.from_numpy(embeddings[self.train_rows_np]).to(device), dim=-1)
        self.z_eval = F.normalize(torch.from_numpy(embeddings[self.eval_rows_np]).to(device),
                                  dim=-1)
        source = self.dataset.source
        a = source.shape[1]
        self.n_attributes, self.n_combinations = a, 1 << a
        combos = torch.from_numpy(combination_ids(source)).to(device)
        sums = torch.zeros(self.n_combinations, self.z.shape[1], device=device)
        sums.index_add_(0, combos, self.z)
        counts = torch.bincount(combos, minlength=self.n_combinations)
        self.present = counts > 0
        # prototypes: means of the real training embeddings of every combination, constant
        self.bank = F.normalize(sums / counts.clamp_min(1)[:, None], dim=-1)
        self.source_attributes = torch.from_numpy(source.astype(np.float32)).to(device)
        self.source_combination = combos
        self.sampler = TargetCombinationSampler(self.dataset, config.batch_size,
                                                config.per_group, seed=config.seed)

    def on_epoch(self, epoch: int) -> None:
        """This epoch's targets of every training row, copied to the device once."""
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        target = self.dataset.targets(np.arange(len(self.dataset)))
        self.target_attributes = torch.from_numpy(target.astype(np.float32)).to(self.device)
        self.target_combination = torch.from_numpy(combination_ids(target)).to(self.device)

    # model ---------------------------------------------------------------------------------
    def model_config(self) -> dict:
        c = self.config
        return {"dim": int(self.z.shape[1]), "n_attributes": self.n_attributes,
                "hidden": c.hidden, "flow_steps": c.flow_steps, "alpha": c.alpha}

    def build_model(self) -> nn.Module:
        return FlowField(**self.model_config())

    # one step ------------------------------------------------------------------------------
    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": self.z[rows], "target": self.target_attributes[rows],
                "combination": self.target_combination[rows]}

    def prototype_logits(self, flowed: torch.Tensor, combination: torch.Tensor):
        """Logits of ``flowed`` against the prototypes, the index of each row's positive, and
        which rows have one (a target combination without training rows has no prototype)."""
        if self.config.prototypes == "batch":
            # the broken variant: means of the flowed batch (rows of a combination are
            # contiguous, per_group each), with gradient
            k = self.config.per_group
            prototypes = F.normalize(flowed.reshape(-1, k, flowed.shape[1]).mean(dim=1), dim=-1)
            owner = torch.arange(prototypes.shape[0], device=flowed.device).repeat_interleave(k)
            return flowed @ prototypes.T, owner, torch.ones_like(owner, dtype=torch.bool)
        logits = flowed @ self.bank.T
        logits = logits.masked_fill(~self.present[None, :], float("-inf"))
        return logits, combination, self.present[combination]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        c = self.config
        z, target = batch["z"], batch["target"]
        trajectory = model(z, target)
        flowed = trajectory[-1].float()
        logits, positive, has = self.prototype_logits(flowed, batch["combination"])
        per_row = F.cross_entropy(logits / c.temperature, positive.masked_fill(~has, 0),
                                  reduction="none")
        infonce = global_mean((per_row * has).sum(), has.sum())  # over the global batch
        identity = (flowed - z).pow(2).sum(dim=-1).mean()
        divergence, curl = self.field_regularisers(model, z, target)
        loss = (infonce + c.identity_weight * identity + c.divergence_weight * divergence
                + c.curl_weight * curl)
        terms = {"infonce": infonce, "identity": identity, "divergence": divergence,
                 "curl": curl}
        probe = {"outputs": flowed.detach(), "labels": batch["combination"], "inputs": z}
        return StepOutput(loss, terms, probe)

    @staticmethod
    def field_regularisers(model: nn.Module, z: torch.Tensor, target: torch.Tensor):
        """Squared Hutchinson divergence and antisymmetric-Jacobian (curl) estimates of the
        field at the batch's inputs, one Rademacher probe per row (see the module)."""
        module = unwrap(model)
        z = z.detach().float().requires_grad_(True)
        with torch.autocast(z.device.type, enabled=False):
            v = module.field(z, target)
            u = torch.randint(0, 2, z.shape, device=z.device).float() * 2 - 1
            jt_u = torch.autograd.grad(v, z, u, create_graph=True)[0]            # J^T u
            w = torch.zeros_like(v, requires_grad=True)
            jt_w = torch.autograd.grad(v, z, w, create_graph=True)[0]            # J^T w
            j_u = torch.autograd.grad(jt_w, w, u, create_graph=True)[0]          # J u
        divergence = (u * j_u).sum(dim=-1).pow(2).mean()
        curl = 0.5 * (j_u - jt_u).pow(2).sum(dim=-1).mean()
        return divergence, curl

    def monitor(self, probe: dict) -> dict:
        outputs, inputs = probe["outputs"].float(), probe["inputs"].float()
        return {"movement": float((outputs - inputs).norm(dim=-1).mean()),
                "label_spread": label_spread(outputs, probe["labels"])}

    # evaluation ----------------------------------------------------------------------------
    def eval_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Source and target attributes of the evaluation rows (targets drawn with seed + 1)."""
        rows = self.eval_rows_np if len(self.eval_rows_np) else self.train_rows_np
        source = self.table["attributes"][rows]
        c, excluded = self.config, self.excluded_targets
        if len(excluded) and not allowed_flips(combination_ids(source), flip_masks(
                source.shape[1], c.min_flips, c.max_flips), excluded).any(axis=1).all():
            # a held-out row with every target left out: draw as without exclusions (evaluate
            # then skips the targets without a prototype)
            excluded = None
        data = AttributeFlipDataset(np.zeros((len(rows), 1)), source, min_flips=c.min_flips,
                                    max_flips=c.max_flips, seed=c.seed + 1,
                                    excluded_targets=excluded)
        return source, data.targets(np.arange(len(rows)), epoch=0)

    def evaluate(self, model: nn.Module) -> tuple[dict, dict]:
        device = self.device
        z = self.z_eval if len(self.eval_rows_np) else self.z
        rows = self.eval_rows_np if len(self.eval_rows_np) else self.train_rows_np
        source, target = self.eval_targets()
        source_combo = torch.from_numpy(combination_ids(source)).to(device)
        target_combo = torch.from_numpy(combination_ids(target)).to(device)
        # rows whose source and target combinations both have a prototype (the baseline needs
        # both; the same rows for the flow)
        keep = self.present[source_combo] & self.present[target_combo]
        z, source_combo, target_combo = z[keep], source_combo[keep], target_combo[keep]
        keep_np = keep.cpu().numpy()
        source_t = torch.from_numpy(source[keep_np].astype(np.float32)).to(device)
        target_t = torch.from_numpy(target[keep_np].astype(np.float32)).to(device)
        identity = self.table[IDENTITY][rows][keep_np]

        trajectory = model(z, target_t).float()
        steering = F.normalize(z + self.bank[target_combo] - self.bank[source_combo], dim=-1)
        weight, bias = linear_probes(self.z, self.source_attributes)
        metrics: dict = {"eval_rows": int(keep.sum()),
                         "eval_rows_without_prototype": int((~keep).sum()),
                         "probe_accuracy_real": self._probe_accuracy(z, source_t, weight, bias)}
        for name, points in (("flow", trajectory), ("steering", torch.stack([z, steering]))):
            metrics.update({f"{name}/{k}": v for k, v in self._transfer_metrics(
                points, source_t, target_t, target_combo, identity, weight, bias).items()})
        arrays = {"pred": trajectory[-1].cpu().numpy(),
                  "target": self.bank[target_combo].cpu().numpy(),
                  "groups": target_combo.cpu().numpy(), "trajectory": trajectory.cpu().numpy(),
                  "steering": steering.cpu().numpy(),
                  "prototypes": self.bank[self.present].cpu().numpy(),
                  "prototype_ids": torch.nonzero(self.present).flatten().cpu().numpy(),
                  "attribute_names": np.array(self.table["names"], dtype=str)}
        return metrics, arrays

    @staticmethod
    def _probe_accuracy(x, labels, weight, bias) -> float:
        return float(((x @ weight + bias > 0).float() == labels).float().mean())

    def _transfer_metrics(self, points, source, target, target_combo, identity, weight,
                          bias) -> dict:
        """Metrics of one method's points [steps + 1, n, D] (the input first)."""
        z, moved = points[0], points[-1]
        predicted = (moved @ weight + bias > 0).float()
        flipped = source != target
        correct = predicted == target
        metrics = {
            "movement": float((moved - z).norm(dim=-1).mean()),
            "step_distance": [float(d) for d in (points[1:] - points[:-1]).norm(dim=-1)
                              .mean(dim=1).tolist()],
            "transfer_accuracy": float(correct[flipped].float().mean()),
            "transfer_all_accuracy": float(correct.all(dim=1).float().mean()),
            "preservation": float(correct[~flipped].float().mean())
            if (~flipped).any() else float("nan"),
            "cluster_purity": cluster_purity((moved @ self.bank.T).masked_fill(
                ~self.present[None, :], float("-inf")).argmax(dim=1), target_combo),
        }
        try:
            metrics["silhouette"] = silhouette(moved, target_combo)
        except ValueError:  # a single target combination among the evaluation rows
            metrics["silhouette"] = float("nan")
        if len(identity) and all(v is not None for v in identity):
            ids = torch.from_numpy(identity.astype(np.int64)).to(z.device)
            similarity = moved @ z.T
            similarity.fill_diagonal_(float("-inf"))  # its own source image is not a match
            metrics["identity_recall@1"] = float((ids[similarity.argmax(dim=1)] == ids)
                                                 .float().mean())
        return metrics


RECIPE = FlowRecipe
