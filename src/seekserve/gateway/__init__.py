"""`seekserve gateway`: an OpenAI-compatible access layer in front of many engines.

client ─► app.py (ASGI: auth, limits, cache) ─► proxy.py (model chain, retries, fallback)
                                                  ├─ routing.py  which backend
                                                  ├─ breaker.py  may it be sent to
                                                  ├─ upstream.py one HTTP exchange, SSE parsing
                                                  └─ stream.py   relay a stream, continue it elsewhere
health.py probes every backend (health, load from /metrics, models); docs/gateway.md has the rest.
"""
