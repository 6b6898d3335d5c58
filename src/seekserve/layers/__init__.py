"""What models are made of and call: attention over the paged KV cache (`attention.py`), the layers
models are built from (`modules.py`: linear, embedding, RMS norm, rotary tables), and the
hand-written CPU kernels with their loader (`cpu_kernels.py`, `kernels/`). Imports nothing from the
packages above it (models, quant, engine, server, cli)."""
