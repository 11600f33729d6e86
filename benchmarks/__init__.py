"""benchmarks: commands that print the figures the docs quote (`python -m benchmarks.<name>`)."""
