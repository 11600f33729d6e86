"""support: helpers the tests and the benchmarks share (frozen params, project copies, real servers, the import
graph, memory figures). Imports neither tests/ nor benchmarks/, so the two never import each other."""
