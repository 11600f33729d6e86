"""flightops' pipeline code: the ground floor (`config`, `io`, `features`, `stages`, `cli`) and the lifecycle
packages `data`, `model`, `release` and `monitor` (docs/architecture.md)."""
