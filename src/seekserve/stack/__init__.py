"""`seekserve stack up`: the gateway's stack on one machine without Kubernetes (deploy/local/)."""
