# The collapse doctor on every run the trainer sections left, broken and fixed: each broken
# variant ends with its cause (exit 1), each fixed one with HEALTHY (exit 0). The verdicts are
# also written as JSON (doctor.json beside each run, and one for the sequence file that the
# trainer refused) and as an HTML page for the broken contrastive run.
banner "doctor: the cause of each broken run, and a healthy verdict on each fixed one"
DOCTOR="$DEMO_OUT/doctor"
mkdir -p "$DOCTOR"
for run in contrastive lvm flow_bank slots_clamped; do
  expect 0 uncollapse doctor "$DEMO_OUT/runs/$run" --json "$DOCTOR/$run.json"
done
for run in contrastive_row_ids flow_batch slots_unclamped; do
  expect 1 uncollapse doctor "$DEMO_OUT/runs/$run" --json "$DOCTOR/$run.json"
done
show "the sequence file without doc_ids, which the trainer refused: the doctor reads the file alone"
expect 1 uncollapse doctor --sequences "$DEMO_OUT/wiki_sequences_no_doc_ids.npz" \
  --json "$DOCTOR/lvm_no_doc_ids.json"
expect 1 uncollapse doctor "$DEMO_OUT/runs/contrastive_row_ids" --quiet \
  --html "$DOCTOR/contrastive_row_ids.html" > /dev/null
python - "$DOCTOR" <<'PY'
import json
import sys
from pathlib import Path

folder = Path(sys.argv[1])
want = {"contrastive": "HEALTHY", "lvm": "HEALTHY", "flow_bank": "HEALTHY",
        "slots_clamped": "HEALTHY", "contrastive_row_ids": "NO_POSITIVES_IN_BATCH",
        "flow_batch": "PROTOTYPES_FROM_OUTPUTS", "slots_unclamped": "NEGATIVE_LOSS_TERM",
        "lvm_no_doc_ids": "NO_DOC_IDS"}
for name, expected in want.items():
    report = json.loads((folder / f"{name}.json").read_text())
    causes = report["stats"]["causes"]
    verdict = f"{causes[0]['code']} ({causes[0]['confidence']:.2f})" if causes else "HEALTHY"
    print(f"{name:22s} {verdict:34s} {causes[0]['fix'][:70] + '...' if causes else ''}")
    assert (causes[0]["code"] if causes else "HEALTHY") == expected, (name, verdict)
PY
