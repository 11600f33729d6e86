"""monitor: compare windows of logged live traffic with the reference the champion was trained on.

The stages a reader walks through, one module each: `log` (the prediction log and outcomes as typed frames),
`windows` (which windows are ready), `reference` (the champion's training sample), `calibration` (thresholds
learned from the reference period's own windows, stored with the model), `drift` (Evidently's analysis
of one window into a `WindowSummary`), `decision` (retrain or not), `bookkeeping` (the state between runs and the
events), `dashboard` (the reviewed snapshot and the Evidently dashboard), `history` (the demo's table and plot), and
`store` (the I/O shell: files, state, the Evidently workspace). All but `store` are pure.
"""
