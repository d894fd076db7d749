# The demo's last page: each broken-versus-fixed pair side by side in $DEMO_OUT/index.html,
# with the pictures `uncollapse report` draws for the runs and the verdicts of every check.
banner "page: reports of the runs the page shows, then $DEMO_OUT/index.html"
for run in contrastive contrastive_row_ids flow_batch slots_unclamped; do
  expect 0 uncollapse report "$DEMO_OUT/runs/$run"
done
show "python demo/page.py $DEMO_OUT"
python demo/page.py "$DEMO_OUT"
echo "open $DEMO_OUT/index.html in a browser to see every pair side by side"
