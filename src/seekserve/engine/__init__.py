"""The embedded inference engine: scheduler, KV block manager, model runner, sampler, engine loop."""
