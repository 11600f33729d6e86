"""model: from prepared splits to a chosen, evaluated, gated model.

`train` fits one model (and its directory format); `search` proposes the candidates and picks the winner,
`distributed` trains on LightGBM's Dask learner, `gpu` checks the OpenCL set-up; `evaluate` scores the test split
beside naive baselines; `gate` decides whether a challenger may replace the champion.
"""
