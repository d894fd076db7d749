"""Each cause's judgement on small logged metrics and data files (no training): what fires,
what does not, how confidence adds up, and how causes are ranked."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uncollapse.errors import ToolError
from uncollapse.validators.doctor import diagnose_run
from uncollapse.validators.doctor.causes import CAUSE_OF
from uncollapse.validators.doctor.diagnose import _report
from uncollapse.validators.doctor.evidence import Evidence, Suspect
from uncollapse.validators.doctor.rules import world_size


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def top(report):
    causes = report.stats["causes"]
    return causes[0]["code"] if causes else "HEALTHY"


def test_confidence_is_the_noisy_or_of_distinct_facts_and_a_repeated_fact_counts_once():
    suspect = Suspect(CAUSE_OF["DIVERGENCE"])
    suspect.add(0.7, "a", "one fact", fact="x")
    suspect.add(0.6, "b", "the same fact read elsewhere", fact="x")
    assert suspect.confidence == pytest.approx(0.7)
    suspect.add(0.6, "c", "another fact")
    assert suspect.confidence == pytest.approx(1 - 0.3 * 0.4)
    assert [s.says for s in suspect.counted] == ["one fact", "another fact"]


def test_a_falling_loss_is_healthy_with_exit_0(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"step": s, "loss": 2.0 / (1 + s)}
                                               for s in range(20)])
    report = diagnose_run(metrics=path)
    assert report.codes() == ["HEALTHY"] and report.exit_code() == 0
    assert report.findings[0].severity == "info"


def test_a_loss_term_below_zero_is_a_negative_loss_term_at_its_step(tmp_path):
    rows = [{"step": s, "loss": 1.0 - 0.05 * s, "reg/diversity": 0.3 - 0.03 * s,
             "monitor/uniformity": -2.0} for s in range(20)]
    report = diagnose_run(metrics=write_jsonl(tmp_path / "m.jsonl", rows))
    assert top(report) == "NEGATIVE_LOSS_TERM" and report.exit_code() == 1
    says = [e["says"] for e in report.stats["causes"][0]["evidence"]]
    assert any("reg/diversity reached -0.27 at step 19" in s for s in says)
    assert not any("uniformity" in s for s in says)  # signed by definition


def test_a_loss_that_turns_nan_after_finite_steps_is_divergence(tmp_path):
    rows = [{"step": s, "loss": 0.5} for s in range(5)] + [{"step": 5, "loss": "nan"}]
    report = diagnose_run(metrics=write_jsonl(tmp_path / "m.jsonl", rows))
    assert top(report) == "DIVERGENCE"
    assert "became nan at step 5 (last finite value 0.5 at step 4)" in \
        report.stats["causes"][0]["evidence"][0]["says"]


def test_a_loss_that_explodes_a_hundredfold_is_divergence(tmp_path):
    rows = [{"step": s, "loss": 1.0 * 10 ** min(s, 3)} for s in range(8)]
    report = diagnose_run(metrics=write_jsonl(tmp_path / "m.jsonl", rows))
    assert top(report) == "DIVERGENCE"
    assert report.stats["causes"][0]["evidence"][0]["value"] == pytest.approx(1000.0)


def test_validation_loss_rising_while_training_loss_falls_is_overfitting(tmp_path):
    rows = [{"epoch": e, "trn": 1.0 / (1 + e), "dev": 0.8 + 0.02 * (e - 3) ** 2}
            for e in range(20)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    assert top(diagnose_run(metrics=path)) == "HEALTHY"  # names not known without --map
    report = diagnose_run(metrics=path, mapping="loss=trn,val_loss=dev")
    assert top(report) == "OVERFITTING"
    assert "Keep the checkpoint of step 3" in report.findings[0].hint


@pytest.mark.parametrize("dev", [
    lambda e: 1.0 / (1 + e),                 # validation keeps falling
    lambda e: 0.8 + 0.02 * (e - 18) ** 2,    # its minimum is late in the run
])
def test_no_overfitting_when_validation_loss_falls_or_bottoms_out_late(tmp_path, dev):
    rows = [{"epoch": e, "loss": 1.0 / (1 + e), "val_loss": dev(e)} for e in range(20)]
    assert top(diagnose_run(metrics=write_jsonl(tmp_path / "m.jsonl", rows))) == "HEALTHY"


def test_no_overfitting_when_both_losses_rise(tmp_path):
    rows = [{"epoch": e, "loss": 0.5 + 0.01 * e, "val_loss": 0.8 + 0.05 * e}
            for e in range(20)]
    report = diagnose_run(metrics=write_jsonl(tmp_path / "m.jsonl", rows))
    assert "OVERFITTING" not in [c["code"] for c in report.stats["causes"]]


def grouped_table(tmp_path, per_group: int):
    rows = 120
    match = np.arange(rows) // per_group
    table = pa.table({"image_id": [f"img{m:04d}" for m in match],
                      "match_id": pa.array(match, pa.int64()),
                      "caption_idx": pa.array(np.arange(rows) % per_group, pa.int16()),
                      "caption": [f"caption {i} of image {m}" for i, m in enumerate(match)],
                      "split": ["train"] * rows,
                      "source_row": pa.array(np.arange(rows), pa.int64())})
    path = tmp_path / f"captions_{per_group}.parquet"
    pq.write_table(table, path)
    return path


def test_zero_positives_on_one_rank_are_no_positives_and_on_four_ranks_a_split(tmp_path):
    rows = [{"step": s, "loss": 0.0, "positives_per_row": 0.0} for s in range(10)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    captions = grouped_table(tmp_path, per_group=5)
    one = diagnose_run(metrics=path, captions=captions)
    assert top(one) == "NO_POSITIVES_IN_BATCH"
    four = diagnose_run(metrics=path, captions=captions, world_size=4)
    assert top(four) == "POSITIVES_SPLIT_ACROSS_RANKS"
    says = " ".join(e["says"] for e in four.stats["causes"][0]["evidence"])
    assert "4 ranks" in says and "the table is grouped right (24 groups" in says


def test_a_table_of_single_row_groups_is_no_positives_whatever_the_ranks(tmp_path):
    rows = [{"step": s, "loss": 0.0} for s in range(10)]
    report = diagnose_run(metrics=write_jsonl(tmp_path / "m.jsonl", rows),
                          captions=grouped_table(tmp_path, per_group=1), world_size=8)
    assert top(report) == "NO_POSITIVES_IN_BATCH"
    assert "POSITIVES_SPLIT_ACROSS_RANKS" not in report.stats["causes"]


def test_world_size_comes_from_the_command_line_or_a_logged_column():
    ev = Evidence("x")
    assert world_size(ev) == 1
    ev.settings["world_size"] = 2
    assert world_size(ev) == 2


def sequence_file(tmp_path, name, doc_ids, positions=None, samples=40):
    n = samples if doc_ids is None else len(doc_ids)
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(n, 4)).astype(np.float32) * 5
    contexts = np.stack([np.roll(targets, k, axis=0) for k in (3, 2, 1)], axis=1)
    arrays = {"context_sequences": contexts, "target_vectors": targets}
    if doc_ids is not None:
        arrays["doc_ids"] = np.asarray(doc_ids, dtype=np.int64)
    if positions is not None:
        arrays["target_positions"] = np.asarray(positions, dtype=np.int32)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def test_sequence_files_without_document_ids_or_with_a_row_counter_are_no_doc_ids(tmp_path):
    missing = diagnose_run(sequences=sequence_file(tmp_path, "none", None))
    assert top(missing) == "NO_DOC_IDS" and missing.exit_code() == 1
    counter = diagnose_run(sequences=sequence_file(tmp_path, "rows", np.arange(40)))
    assert top(counter) == "NO_DOC_IDS"
    assert "every sample is its own document (40 doc ids for 40 samples)" in \
        counter.stats["causes"][0]["evidence"][0]["says"]


def test_documents_shorter_than_the_window_leave_no_hard_negatives(tmp_path):
    docs = np.repeat(np.arange(20), 2)           # two samples per document
    positions = np.tile([3, 4], 20)
    short = diagnose_run(sequences=sequence_file(tmp_path, "short", docs, positions))
    assert top(short) == "NO_HARD_NEGATIVES"
    assert short.stats["causes"][0]["evidence"][0]["value"] == pytest.approx(1.0)
    docs = np.repeat(np.arange(4), 10)            # ten samples per document
    positions = np.tile(np.arange(3, 13), 4)
    long = diagnose_run(sequences=sequence_file(tmp_path, "long", docs, positions))
    assert top(long) == "HEALTHY"


def test_flips_recorded_from_an_augmentation_that_skips_samples_are_partial(tmp_path):
    rng = np.random.default_rng(0)
    source = rng.integers(0, 2, (200, 3)).astype(np.int8)
    target = source.copy()
    flipped = rng.random(200) < 0.6
    target[flipped, 0] ^= 1
    np.savez(tmp_path / "flips.npz", source_attributes=source, target_attributes=target)
    report = diagnose_run(flips=tmp_path / "flips.npz")
    assert top(report) == "PARTIAL_AUGMENTATION"
    assert report.stats["causes"][0]["evidence"][0]["value"] == pytest.approx(flipped.mean())
    target[~flipped, 1] ^= 1
    np.savez(tmp_path / "always.npz", source_attributes=source, target_attributes=target)
    assert top(diagnose_run(flips=tmp_path / "always.npz")) == "HEALTHY"


def test_unit_norm_outputs_beside_raw_targets_are_a_normalised_decoder_input(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.normal(size=(200, 16)).astype(np.float32) * 30
    pred = target + rng.normal(size=target.shape).astype(np.float32)
    np.savez(tmp_path / "raw.npz", pred=pred, target=target)
    assert top(diagnose_run(embeddings=tmp_path / "raw.npz")) == "HEALTHY"
    np.savez(tmp_path / "unit.npz", pred=pred / np.linalg.norm(pred, axis=1, keepdims=True),
             target=target)
    assert top(diagnose_run(embeddings=tmp_path / "unit.npz")) == "NORMALISED_DECODER_INPUT"


def test_outputs_that_are_one_direction_are_mean_vector_collapse(tmp_path):
    rng = np.random.default_rng(0)
    pred = np.ones((200, 16), np.float32) + 1e-3 * rng.normal(size=(200, 16)).astype(np.float32)
    np.save(tmp_path / "pred.npy", pred)
    assert top(diagnose_run(embeddings=tmp_path / "pred.npy")) == "MEAN_VECTOR_COLLAPSE"


def test_outputs_spanning_two_of_sixty_four_directions_are_dimensional_collapse(tmp_path):
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 64))
    np.save(tmp_path / "pred.npy", pred.astype(np.float32))
    assert top(diagnose_run(embeddings=tmp_path / "pred.npy")) == "DIMENSIONAL_COLLAPSE"
    np.save(tmp_path / "full.npy", rng.normal(size=(500, 64)).astype(np.float32))
    assert top(diagnose_run(embeddings=tmp_path / "full.npy")) == "HEALTHY"


def test_a_confident_root_cause_ranks_above_the_collapse_it_produced():
    ev = Evidence("run")
    symptom, root = Suspect(CAUSE_OF["MEAN_VECTOR_COLLAPSE"]), Suspect(CAUSE_OF["DIVERGENCE"])
    symptom.add(0.96, "eval.json", "margin below 0")
    root.add(0.85, "metrics.jsonl", "loss exploded")
    assert [c["code"] for c in _report(ev, [symptom, root]).stats["causes"]] == [
        "DIVERGENCE", "MEAN_VECTOR_COLLAPSE"]
    weak = Suspect(CAUSE_OF["DIVERGENCE"])
    weak.add(0.6, "metrics.jsonl", "loss grew")
    assert [c["code"] for c in _report(ev, [symptom, weak]).stats["causes"]] == [
        "MEAN_VECTOR_COLLAPSE", "DIVERGENCE"]


def test_suspects_below_the_verdict_are_listed_as_considered_not_found():
    weak = Suspect(CAUSE_OF["PROTOTYPES_FROM_OUTPUTS"])
    weak.add(0.3, "eval.json", "transfer below the steering baseline")
    report = _report(Evidence("run", checks=["evaluation"]), [weak])
    assert report.codes() == ["HEALTHY"]
    assert report.stats["considered"] == [{"code": "PROTOTYPES_FROM_OUTPUTS",
                                           "confidence": 0.3,
                                           "evidence": ["transfer below the steering baseline"]}]


def test_nothing_to_diagnose_is_a_tool_error():
    with pytest.raises(ToolError, match="nothing to diagnose"):
        diagnose_run()
