"""The next-vector (LVM) recipe: predict the next chunk's vector from the vectors before it.

Data: a sequence file, either form, held on the device (compact: the vectors once, windows by
index arithmetic; dense: contexts and targets). Batches from ``DiverseBatchSampler`` on
``doc_ids`` (at most ``max_per_doc`` samples of one document per batch); each sample's hard
negative is another target of its document (``HardNegativeSequenceDataset``'s draw, made for
the whole epoch at once and copied to the device once per epoch). The next epoch's plan and
negatives (pure functions of the epoch) are computed in a background thread while this epoch
trains, so an epoch boundary costs two host-to-device copies, not a pause of the GPU.

Loss (weights are options; every term is >= 0 and declared so to the loss guard):
symmetric InfoNCE on ``y_cos`` against the normalised targets, with in-batch negatives and the
hard negatives; moment matching of ``y_dec``'s per-dimension mean and std to the targets'
(computed once from the training targets); a variance floor on ``y_dec``; optional MSE.
With ``doc_negatives = K > 0``, ``doc_infonce``: the cross-entropy of the true target against
K targets of the sample's own document, drawn uniformly on the device each step (torch's
generator, which the engine checkpoints) and never the sample itself or a sentence of its
context, the candidates of the within-document retrieval the evaluation reports.

Evaluation on held-out documents, every metric beside three baselines computed the same way:
the global mean target, the last context vector, and the mean of the context vectors.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uncollapse.data.sequences.hard_negatives import HardNegativeSequenceDataset
from uncollapse.families import recipe
from uncollapse.report import Report
from uncollapse.samplers.diverse import DiverseBatchSampler
from uncollapse.trainers.gather import gather, gather_with_grad, global_mean, local_rows
from uncollapse.trainers.losses import moment_matching, variance_floor
from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.lvm.model import LVMModelConfig, NextVectorModel
from uncollapse.trainers.preflight import validate_sequence_inputs
from uncollapse.trainers.recipe import Recipe, StepOutput
from uncollapse.validators.collapse.metrics import effective_rank, moment_comparison

__all__ = ["RECIPE", "LVMRecipe", "nearest", "predictor_metrics", "round_trip"]

BLOCK = 1024


class LVMRecipe(Recipe):
    """Next-vector prediction over a sequence file (see the module)."""

    config_class = LVMConfig
    name = "lvm"
    lower_bounds = dict(recipe("lvm").lower_bounds)  # declared in the recipes table
    # hard negatives and the per-document cap need documents; arrays of the wrong shape (a 0-d
    # array where a list is expected) or lengths that disagree leave nothing to train on
    unforceable = frozenset({"MISSING_DOC_IDS", "ARRAY_SHAPE", "LENGTH_MISMATCH"})
    replicated = ("target_mean", "target_std")  # the moment terms' reference, on every rank

    def preflight(self) -> Report:
        return validate_sequence_inputs(self.config.sequences)

    # data -------------------------------------------------------------------------------------
    def setup(self) -> None:
        config = self.config
        self.data = HardNegativeSequenceDataset(config.sequences,
                                                exclude_window=config.exclude_window,
                                                seed=config.seed)
        data, device = self.data, self.device
        self.context_length = data.context_length
        doc_ids = np.asarray(data.doc_ids, dtype=np.int64)
        docs = np.unique(doc_ids)
        rng = np.random.default_rng(config.seed)
        held = docs[rng.random(len(docs)) < config.eval_fraction]
        if len(held) == 0 and len(docs) > 1:
            held = docs[-1:]
        is_eval = np.isin(doc_ids, held)
        self.train_samples_np = np.flatnonzero(~is_eval)
        self.eval_samples_np = np.flatnonzero(is_eval)
        self.train_samples = torch.from_numpy(self.train_samples_np).to(device)
        self.eval_samples = torch.from_numpy(self.eval_samples_np).to(device)
        self.doc_ids = torch.tensor(doc_ids, device=device)
        positions = (data.target_positions if data.target_positions is not None
                     else np.arange(len(doc_ids)))
        self.positions = torch.tensor(np.asarray(positions, dtype=np.int64), device=device)
        if data.form == "compact":
            self.vectors = torch.tensor(np.asarray(data.vectors), dtype=torch.float32,
                                        device=device)
            self.target_rows = torch.tensor(np.asarray(data.target_rows), device=device)
            self.offsets = torch.arange(-self.context_length, 0, device=device)
        else:
            self.contexts = torch.tensor(np.asarray(data.context_sequences),
                                         dtype=torch.float32, device=device)
            self.targets_dense = torch.tensor(np.asarray(data.target_vectors),
                                              dtype=torch.float32, device=device)
        train_targets = self.target(self.train_samples)
        self.target_mean = train_targets.mean(dim=0)
        # a dimension the targets never vary in would divide by zero: floor it
        std = train_targets.std(dim=0)
        self.target_std = std.clamp_min(1e-6 * float(std.max().clamp_min(1e-12)))
        self.sampler = DiverseBatchSampler(doc_ids[self.train_samples_np], config.batch_size,
                                           config.max_per_doc, seed=config.seed, drop_last=True)
        if config.doc_negatives:
            self.doc_members, self.doc_start, self.doc_size = self.document_members(
                doc_ids, self.train_samples_np)

    def document_members(self, doc_ids: np.ndarray, samples: np.ndarray):
        """The training samples grouped by document (``members``, on the device), and for
        every sample the start and size of its document's group there (0 for held-out ones)."""
        members = samples[np.argsort(doc_ids[samples], kind="stable")]
        docs, first, sizes = np.unique(doc_ids[members], return_index=True, return_counts=True)
        start, size = np.zeros(len(doc_ids), np.int64), np.zeros(len(doc_ids), np.int64)
        slot = np.searchsorted(docs, doc_ids[samples])
        start[samples], size[samples] = first[slot], sizes[slot]
        return tuple(torch.from_numpy(a).to(self.device) for a in (members, start, size))

    def document_negatives(self, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, K] same-document negatives of ``samples`` and which of them count (not the
        sample itself, not a sentence of its context)."""
        draw = torch.rand(len(samples), self.config.doc_negatives, device=samples.device)
        size = self.doc_size[samples][:, None]
        picked = self.doc_members[self.doc_start[samples][:, None]
                                  + (draw * size).long().clamp_max(size - 1)]
        offset = self.positions[samples][:, None] - self.positions[picked]
        valid = (picked != samples[:, None]) & ~((offset >= 1) & (offset <= self.context_length))
        return picked, valid

    def context(self, samples: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "vectors"):
            return self.vectors[self.target_rows[samples][:, None] + self.offsets]
        return self.contexts[samples]

    def target(self, samples: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "vectors"):
            return self.vectors[self.target_rows[samples]]
        return self.targets_dense[samples]

    def on_epoch(self, epoch: int) -> None:
        self.data.set_epoch(epoch)
        plan, negatives = self.epoch_arrays(epoch)
        self.negatives = torch.from_numpy(negatives).to(self.device)
        self.next_plan = (epoch, plan)
        if not hasattr(self, "ahead"):
            self.ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lvm-epoch")
        self.prepared = (epoch + 1, self.ahead.submit(self.draw_epoch, epoch + 1))

    def epoch_arrays(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's plan rows and negatives: prepared ahead in the background, or now."""
        prepared = getattr(self, "prepared", None)
        if prepared is not None and prepared[0] == epoch:
            return prepared[1].result()
        return self.draw_epoch(epoch)

    def draw_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The plan rows and every sample's hard negative of ``epoch`` (host arrays). Draws from
        a view of the dataset that shares its arrays but has its own epoch, so a thread can
        draw the next epoch while this one trains."""
        view = object.__new__(type(self.data))
        view.__dict__.update(self.data.__dict__)
        view.set_epoch(epoch)
        return self.plan_rows(epoch), view.negative_indices(np.arange(len(view)))

    def epoch_plan(self, epoch: int) -> torch.Tensor:
        next_plan = getattr(self, "next_plan", None)
        if next_plan is not None and next_plan[0] == epoch:
            return torch.from_numpy(next_plan[1]).to(self.device)
        return super().epoch_plan(epoch)

    # model and loss ---------------------------------------------------------------------------
    def model_config(self) -> dict:
        c = self.config
        return LVMModelConfig(dim=int(self.target_mean.shape[0]),
                              context_length=self.context_length, arch=c.arch, hidden=c.hidden,
                              layers=c.layers, heads=c.heads, dropout=c.dropout,
                              residual=c.residual).to_dict()

    def build_model(self) -> nn.Module:
        return NextVectorModel(LVMModelConfig(**self.model_config()))

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        samples = self.train_samples[rows]
        batch = {"context": self.context(samples), "target": self.target(samples),
                 "negative": self.target(self.negatives[samples])}
        if self.config.doc_negatives:
            picked, batch["doc_valid"] = self.document_negatives(samples)
            batch["doc_negatives"] = self.target(picked)                   # [B, K, D]
        return batch

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        # anchors are this rank's samples, in-batch negatives the global batch of every rank
        # (gather.py); each sample's same-document hard negative travels with it. The batch
        # statistics (moment, variance floor) are of the global batch.
        c = self.config
        target, negative = batch["target"], batch["negative"]
        y_dec = model(batch["context"]).float()
        all_y_dec, all_target = gather_with_grad(y_dec), gather(target)
        y_cos = F.normalize(y_dec, dim=-1)
        t_cos, n_cos = F.normalize(target, dim=-1), F.normalize(negative, dim=-1)
        logits = y_cos @ F.normalize(all_target, dim=-1).T / c.temperature  # [B, world * B]
        hard = (y_cos * n_cos).sum(-1, keepdim=True) / c.temperature  # [B, 1]
        labels = local_rows(len(target), target.device)
        n = len(target)
        forward = F.cross_entropy(torch.cat([logits, hard], dim=1), labels, reduction="sum")
        # targets as anchors against every prediction (one process: the same logits, transposed)
        backward_logits = (logits.T if all_y_dec is y_dec else
                           t_cos @ F.normalize(all_y_dec, dim=-1).T / c.temperature)
        backward = F.cross_entropy(backward_logits, labels, reduction="sum")
        terms = {"infonce": 0.5 * (global_mean(forward, n) + global_mean(backward, n)),
                 "moment": moment_matching(all_y_dec, self.target_mean, self.target_std),
                 "variance": variance_floor(all_y_dec, self.target_std, c.variance_ratio)}
        if c.mse_weight:
            terms["mse"] = global_mean(F.mse_loss(y_dec, target, reduction="sum"),
                                       target.numel())
        if c.cosine_weight:
            terms["cosine"] = global_mean((1.0 - (y_cos * t_cos).sum(-1)).sum(), n)
        if c.doc_negatives:
            terms["doc_infonce"] = global_mean(self.document_infonce(
                y_cos, t_cos, batch["doc_negatives"], batch["doc_valid"]), n)
        weights = {"infonce": c.infonce_weight, "moment": c.moment_weight,
                   "variance": c.variance_weight, "mse": c.mse_weight,
                   "cosine": c.cosine_weight, "doc_infonce": c.doc_infonce_weight}
        loss = sum(weights[name] * value for name, value in terms.items())
        return StepOutput(loss, terms, {"outputs": y_dec.detach(), "targets": target})

    def document_infonce(self, y_cos: torch.Tensor, t_cos: torch.Tensor,
                         negatives: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy of each true target against its same-document negatives."""
        negative_logits = torch.einsum("bd,bkd->bk", y_cos, F.normalize(negatives.float(),
                                                                        dim=-1))
        logits = torch.cat([(y_cos * t_cos).sum(-1, keepdim=True),
                            negative_logits.masked_fill(~valid, float("-inf"))], dim=1)
        labels = torch.zeros(len(y_cos), dtype=torch.long, device=y_cos.device)
        return F.cross_entropy(logits / self.config.temperature, labels, reduction="sum")

    def monitor(self, probe: dict) -> dict:
        y_dec, target = probe["outputs"].float(), probe["targets"].float()
        cos = F.cosine_similarity(y_dec, target, dim=-1).mean()
        return {"cosine_to_target": float(cos), "effective_rank": effective_rank(y_dec)}

    # evaluation -------------------------------------------------------------------------------
    def evaluate(self, model: nn.Module) -> tuple[dict, dict]:
        samples = self.eval_samples if len(self.eval_samples) else self.train_samples
        context, target = self.context(samples), self.target(samples)
        y_dec = torch.cat([model(context[i:i + BLOCK]).float()
                           for i in range(0, len(samples), BLOCK)])
        predictors = {
            "model": y_dec,
            "baseline_mean_target": self.target_mean.expand_as(target),
            "baseline_last_context": context[:, -1],
            "baseline_context_mean": context.mean(dim=1),
        }
        docs, positions = self.doc_ids[samples], self.positions[samples]
        metrics: dict = {"eval_samples": int(len(samples)),
                         "eval_documents": int(torch.unique(docs).numel())}
        for name, prediction in predictors.items():
            metrics[name] = predictor_metrics(prediction, target, docs, positions,
                                              self.context_length)
        metrics["model"]["effective_rank_y_dec"] = effective_rank(y_dec)
        metrics["round_trip"] = round_trip(self.corpus(), self.corpus_rows(samples), target,
                                           y_dec)
        arrays = {"pred": y_dec.cpu().numpy(), "target": target.cpu().numpy(),
                  "context_mean": context.mean(dim=1).cpu().numpy()}
        return metrics, arrays

    def corpus(self) -> torch.Tensor:
        """Every chunk vector the file holds (what a vector is decoded against)."""
        if hasattr(self, "vectors"):
            return self.vectors
        return self.targets_dense

    def corpus_rows(self, samples: torch.Tensor) -> torch.Tensor:
        """Each sample's target row in ``corpus()``."""
        return self.target_rows[samples] if hasattr(self, "vectors") else samples


def predictor_metrics(pred: torch.Tensor, target: torch.Tensor, docs: torch.Tensor,
                      positions: torch.Tensor, context_length: int) -> dict:
    """Mean cosine to the target, within-document retrieval with the context excluded, and
    contrastive accuracy against the target's hardest same-document negative.

    Retrieval: the candidates of sample i are the targets of the held-out samples of its
    document, except those at the positions of i's own context (``pos_i - C .. pos_i - 1``):
    otherwise copying the last context vector finds its own sentence. Reported as recall@1
    and MRR of the true target by cosine.
    """
    p, t = F.normalize(pred.float(), dim=-1), F.normalize(target.float(), dim=-1)
    n = len(p)
    ranks = torch.empty(n, dtype=torch.float64, device=p.device)
    beats_hardest = torch.empty(n, dtype=torch.bool, device=p.device)
    true_cos = (p * t).sum(-1)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        rows = torch.arange(start, stop, device=p.device)
        same_doc = docs[start:stop, None] == docs[None, :]
        offset = positions[start:stop, None] - positions[None, :]
        in_context = (offset >= 1) & (offset <= context_length)
        candidate = same_doc & ~in_context
        sim = p[start:stop] @ t.T
        # the true target's score from the same product: compared with the elementwise
        # (p * t).sum, rounding put the target above itself in about a third of the samples
        own = sim[rows - start, rows]
        sim = sim.masked_fill(~candidate, float("-inf"))
        ranks[start:stop] = (sim > own[:, None]).sum(dim=1).double() + 1
        # the target's hardest same-document negative: the most similar other target
        target_sim = (t[start:stop] @ t.T).masked_fill(~same_doc, float("-inf"))
        target_sim[rows - start, rows] = float("-inf")
        hardest = target_sim.argmax(dim=1)
        has_negative = torch.isfinite(target_sim.max(dim=1).values)
        negative_cos = (p[start:stop] * t[hardest]).sum(-1)
        beats_hardest[start:stop] = (true_cos[start:stop] > negative_cos) | ~has_negative
    return {"mean_cosine": float(true_cos.mean()),
            "recall@1": float((ranks == 1).double().mean()),
            "mrr": float((1.0 / ranks).mean()),
            "contrastive_accuracy_hardest": float(beats_hardest.double().mean()),
            **{k: v for k, v in moment_comparison(pred.float(), target.float()).items()
               if k in ("std_ratio_median", "mean_shift_median")}}


def round_trip(corpus: torch.Tensor, truth: torch.Tensor, target: torch.Tensor,
               y_dec: torch.Tensor) -> dict:
    """Decode a vector by its nearest chunk in the raw-scale corpus (L2), without a text decoder.

    Top-1: the share of samples whose vector decodes to the true target's chunk (row ``truth``
    of ``corpus``), for (A) the
    encoder's own target vectors, (B) the same vectors L2-normalised, (C) ``y_dec``, and, for
    contrast, ``y_cos`` (what an L2-normalised head would hand a decoder). A decoder trained on
    raw vectors reads (B) and ``y_cos`` off-distribution unless the corpus is unit-norm itself.
    """
    corpus = corpus.float()
    norms = corpus.pow(2).sum(-1)

    def top1(vectors: torch.Tensor) -> float:
        return float((nearest(corpus, norms, vectors.float()) == truth).double().mean())

    return {"A_encoder_top1": top1(target), "B_normalised_top1": top1(F.normalize(target, dim=-1)),
            "C_y_dec_top1": top1(y_dec), "y_cos_top1": top1(F.normalize(y_dec, dim=-1)),
            "corpus_mean_norm": float(norms.sqrt().mean())}


def nearest(corpus: torch.Tensor, norms: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Index of each query's nearest corpus row by L2 distance."""
    out = []
    for start in range(0, len(queries), BLOCK):
        q = queries[start:start + BLOCK]
        out.append((norms[None, :] - 2 * q @ corpus.T).argmin(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=corpus.device)


RECIPE = LVMRecipe
