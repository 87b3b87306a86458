"""Compile Relax modules for WebGPU with a wasm32 host and link them into a model library."""
