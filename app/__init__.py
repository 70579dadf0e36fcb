"""maintenance-shim: a drop-in 503 stand-in for GPU inference services while the GPU trains."""
