# Trainers, part 2: the attribute-flow and slot-attention recipes on CPU, briefly, each broken
# variant beside the fixed one. Flow: synthetic attribute-structured embeddings (the right
# answer is known), prototypes from a bank of real embeddings next to prototypes taken from the
# flowed batch. Slots: small generated scenes, the clamped diversity term next to the unclamped
# one that the loss guard stops. Then `uncollapse report` on one run of each.
rm -rf "$DEMO_OUT/runs/flow_bank" "$DEMO_OUT/runs/flow_batch" "$DEMO_OUT/runs/slots_clamped" \
  "$DEMO_OUT/runs/slots_unclamped"

banner "trainers: attribute flow with a bank of real prototypes next to prototypes of the flowed batch"
show "python: 600 synthetic 32-d embeddings of 40 identities with 3 attributes (uncollapse.data.attributes.synthetic)"
mkdir -p "$DEMO_OUT/flow"
python - "$DEMO_OUT/flow" <<'PY'
import sys
from pathlib import Path

import numpy as np

from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)

out = Path(sys.argv[1])
embeddings, table = synthetic_attribute_embeddings(rows=600, dim=32, attributes=3,
                                                   identities=40, seed=0)
np.save(out / "embeddings.npy", embeddings)
write_attribute_table(table, out / "attributes.parquet")
print(f"{len(embeddings)} rows, {(table['split'] == 'test').sum()} held out (test identities)")
PY
FLOW=(--embeddings "$DEMO_OUT/flow/embeddings.npy" --attributes "$DEMO_OUT/flow/attributes.parquet"
      --steps 60 --batch-size 64 --per-group 8 --hidden 64 --lr 3e-3 --device cpu --quiet
      --monitor-warmup 30 --monitor-every 30)
expect 0 uncollapse train flow "${FLOW[@]}" --prototypes bank --out "$DEMO_OUT/runs/flow_bank"
expect 0 uncollapse train flow "${FLOW[@]}" --prototypes batch --out "$DEMO_OUT/runs/flow_batch"
show "both runs and the steering baseline, read by linear probes trained on real embeddings"
python - "$DEMO_OUT/runs" <<'PY'
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
bank, batch = (json.loads((runs / r / "eval.json").read_text())
               for r in ("flow_bank", "flow_batch"))
rows = (("flow, bank prototypes", bank, "flow"), ("flow, batch prototypes", batch, "flow"),
        ("steering baseline", bank, "steering"))
for name, e, method in rows:
    print(f"{name:24s} transfer accuracy {e[f'{method}/transfer_accuracy']:.3f}  "
          f"unflipped preserved {e[f'{method}/preservation']:.3f}  "
          f"identity recall@1 {e[f'{method}/identity_recall@1']:.3f}")
print("(prototypes of the flowed batch move with it: its InfoNCE falls, its outputs do not "
      "carry their target attributes)")
assert bank["flow/transfer_accuracy"] > batch["flow/transfer_accuracy"]
PY

banner "trainers: slot attention with the clamped diversity term next to the unclamped one"
expect 0 uncollapse build scenes --num 64 --size 16 --max-objects 3 --seed 0 --quiet \
  -o "$DEMO_OUT/scenes_16.npz"
SLOTS=(--scenes "$DEMO_OUT/scenes_16.npz" --slots 4 --slot-dim 16 --channels 16 --batch-size 16
       --steps 30 --lr 3e-3 --warmup-steps 5 --diversity-weight 20 --diversity-warmup 0
       --log-every 1 --monitor-warmup 1000 --eval-fraction 0.25 --device cpu --quiet)
show "the plain mean cosine between slots rewards pushing them apart below 0: the guard stops it"
expect 1 uncollapse train slots "${SLOTS[@]}" --diversity unclamped \
  --out "$DEMO_OUT/runs/slots_unclamped"
expect 0 uncollapse train slots "${SLOTS[@]}" --diversity clamped \
  --out "$DEMO_OUT/runs/slots_clamped"
python - "$DEMO_OUT/runs" <<'PY'
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
logged = [json.loads(line) for line in
          (runs / "slots_clamped" / "metrics.jsonl").read_text().splitlines()]
e = json.loads((runs / "slots_clamped" / "eval.json").read_text())
print("unclamped: stopped by the guard, no evaluation written")
diversity = [r["diversity"] for r in logged]
print(f"clamped:   {len(logged)} steps, diversity term in [{min(diversity):.3f}, "
      f"{max(diversity):.3f}]; held-out fg_ari {e['fg_ari']:.3f}, "
      f"slot_cosine {e['slot_cosine']:.3f}")
print("(30 CPU steps on 16x16 scenes with a heavy diversity weight, to show the guard: far too "
      "short to bind objects)")
assert min(diversity) >= 0 and e["step"] == len(logged)
assert not (runs / "slots_unclamped" / "eval.json").exists()
PY

banner "trainers: reports of a flow run (trajectories) and a slots run (images, reconstructions, masks)"
expect 0 uncollapse report "$DEMO_OUT/runs/flow_bank"
expect 0 uncollapse report "$DEMO_OUT/runs/slots_clamped"
