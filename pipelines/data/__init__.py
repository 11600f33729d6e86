"""data: from the source to validated, prepared splits.

`collect` reads and joins the source for the window; `suite` is the data contract (the suite file, the column kinds
and hard ranges the service takes from it, the `summary.json` record and the guard every later stage calls, with no
Great Expectations import); `validate` runs the suite with GX (`chunks` splits big tables, `explain` turns GX
results into lines a person acts on, `draft` writes a suite from a reference table); `preprocess` makes the label,
the time-ordered splits and the feature schema.
"""
