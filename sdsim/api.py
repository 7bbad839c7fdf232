"""The Python API: predict a text-to-image run by name, as `sdsim predict` does.

    import sdsim
    r = sdsim.predict(device="s23ultra", opt="paper", steps=20)
    r.total_s, r.rows("component"), r.rows("kernel")[0]["why"], r.to_json()
    r.write_trace("s23ultra.json")        # Chrome/Perfetto timeline
    r.plot("s23ultra.png")                # time per component and kernel class (matplotlib)

`sdsim.load_profile`, `sdsim.trace_pipeline` and `sdsim.StableDiffusion` are re-exported too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdsim.cost.predict import Prediction
from sdsim.cost.traffic import DEFAULT as DEFAULT_TRAFFIC


@dataclass
class PredictResult:
    """A prediction with its rows, JSON and trace, as the CLI prints and writes them."""

    prediction: Prediction

    @property
    def total_s(self) -> float:
        return self.prediction.total_s

    @property
    def band_s(self) -> tuple[float, float]:
        """(fastest, slowest) end-to-end seconds over the profile's disagreeing sources."""
        return self.prediction.total_s_low, self.prediction.total_s_high

    @property
    def peak_memory_bytes(self) -> int:
        return self.prediction.peak_memory_bytes

    def rows(self, by: str = "component") -> list[dict]:
        """Rows of the table, in SI units (seconds, FLOPs, bytes) as in JSON: by "component",
        "op" (one call of each) or "kernel" (every dispatch, with the one-line explanation of
        its time)."""
        from sdsim.cost.report import component_rows, kernel_rows, op_rows

        table = {"component": component_rows, "op": op_rows, "kernel": kernel_rows}
        if by not in table:
            raise ValueError(f"by must be one of {', '.join(table)}, not {by!r}")
        return table[by](self.prediction)

    def to_json(self) -> dict:
        """The object `sdsim predict --format json` prints."""
        from sdsim.cost.report import to_json

        return to_json(self.prediction)

    def plot(self, path) -> None:
        """A PNG of where the time goes: a bar per component, split by kernel class (needs
        matplotlib, the `plot` extra)."""
        from sdsim import plot

        plot.write(self.prediction, path)

    def write_trace(self, path) -> None:
        """The predicted kernel timeline as a Chrome/Perfetto trace file."""
        from sdsim import timeline

        p = self.prediction
        timeline.write(path, timeline.predicted_events(p.device, p.components),
                       {"device": p.device, "steps": p.steps, "scheduler": p.scheduler,
                        "resolution": p.resolution, "precision": p.precision,
                        "opt": p.options.describe()})


def predict(device: str = "s23ultra", opt: str = "paper", steps: int = 20,
            scheduler: str = "pndm", resolution: int = 512, precision: str = "fp16",
            model: str = "sd14", traffic: str = DEFAULT_TRAFFIC) -> PredictResult:
    """Latency, traffic and memory of a text-to-image run: `device` a profile name or YAML
    path, `opt` as `--opt` (paper, none, or switch=value items), `model` a preset or folder."""
    from sdsim.cost.predict import predict as _predict
    from sdsim.cost.profile import load_profile
    from sdsim.lower.options import parse_opt

    if steps < 1:
        from sdsim.errors import SdsimError
        raise SdsimError(f"steps must be at least 1, got {steps}")
    return PredictResult(_predict(load_profile(device), parse_opt(opt), steps, scheduler,
                                  resolution, precision, model, traffic=traffic))
