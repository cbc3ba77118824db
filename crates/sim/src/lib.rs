//! In-memory Kubernetes API server and node simulator for end-to-end tests, the demo and scale benchmarks
