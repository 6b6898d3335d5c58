"""Reading a /metrics body in tests: one value per series, looked up by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """The samples of one Prometheus text exposition; `model_name` is added to lookups that lack it."""

    def __init__(self, text: str, model_name: str = "tiny") -> None:
        self.model_name = model_name
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.values[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def has(self, name: str, **labels: str) -> bool:
        return self._key(name, labels) in self.values

    def __call__(self, name: str, **labels: str) -> float:
        key = self._key(name, labels)
        if key not in self.values:
            raise AssertionError(f"{name}{labels} is not in /metrics")
        return self.values[key]

    def names(self) -> set[str]:
        return {name for name, _ in self.values}

    def _key(self, name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        with_model = {"model_name": self.model_name, **labels}
        key = (name, tuple(sorted(with_model.items())))
        return key if key in self.values else (name, tuple(sorted(labels.items())))
