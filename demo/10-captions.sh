# Captions: rebuild the bundled COCO subset with true image ids, validate it, then show the
# classic failure beside it: the same captions with image_id taken from the row number.
banner "captions: build the table from COCO caption JSON (true image ids, one group per image)"
expect 0 uncollapse build captions data/coco/captions_val2017_1000.json --quiet \
  -o "$DEMO_OUT/captions.parquet"
expect 0 uncollapse validate captions "$DEMO_OUT/captions.parquet" --min-group 5 --max-group 7 \
  --json "$DEMO_OUT/reports/captions.json"
expect 0 uncollapse diagnose match-ids "$DEMO_OUT/captions.parquet" --batch-size 256

banner "captions: the same captions with image_id = row number (a loop counter)"
show "python: copy the table with image_id and match_id set to the row number"
python - "$DEMO_OUT/captions.parquet" "$DEMO_OUT/captions_positional.parquet" <<'PY'
import sys

import polars as pl

table = pl.read_parquet(sys.argv[1]).with_row_index("row")
broken = table.with_columns(image_id=pl.col("row").cast(pl.String),
                            match_id=pl.col("row").cast(pl.Int64)).drop("row")
broken.write_parquet(sys.argv[2])
PY
expect 1 uncollapse validate captions "$DEMO_OUT/captions_positional.parquet" --format text \
  --json "$DEMO_OUT/reports/captions-row-ids.json"
expect 1 uncollapse diagnose match-ids "$DEMO_OUT/captions_positional.parquet" --batch-size 256
