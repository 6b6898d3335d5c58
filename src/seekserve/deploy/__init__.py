"""Kubernetes manifests for a seekserve cluster, rendered from values (docs/deploy.md).

`values.py` reads and checks the values; `engines.py`, `gateway.py`, `services.py`,
`autoscaling.py`, `monitoring.py` and `host.py` build the objects; `render.py` writes them as
plain YAML files under deploy/rendered/.
"""
