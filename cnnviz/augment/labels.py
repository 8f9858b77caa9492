"""Steps that can change an image's label: the rule behind the studio's one-line warning.

An augmentation must keep the answer the same: a cat flipped left-right is still a cat, but a
handwritten 6 turned upside down is a 9, and a mirrored 3 is no digit at all. For datasets of
digits (`digits`, `mnist`, or any dataset whose classes are the ten digits) these steps are
flagged:

- RandomHorizontalFlip, RandomVerticalFlip (p > 0): mirror images of digits are other digits or none;
- RandomDiscreteRotation with an angle a quarter turn or more away from upright (90, 180, 270);
- RandomRotation / RandomAffine whose angle range reaches `LARGE_TURN` degrees or more.

No torch import: the pages and the Runs page call it on every rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .pipeline import Pipeline, resolve

LARGE_TURN = 45.0  # degrees: a turn this large can make a digit read as another (or none)
DIGIT_DATASETS = ("digits", "mnist")
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class LabelHazard:
    """One step that can change the label, and how."""

    index: int   # 1-based step number in the pipeline
    name: str    # the step's transform name
    what: str    # what it does, e.g. "turns by 90, 180 or 270 degrees"

    def __str__(self) -> str:
        return f"{self.index}. {self.name} ({self.what})"


def is_digit_classes(classes: Sequence[str] | None) -> bool:
    """True for the ten digit classes: '0'..'9', or torchvision's '0 - zero'..'9 - nine'."""
    if not classes or len(classes) != 10:
        return False
    names = [str(c).strip().lower() for c in classes]
    plain = [str(d) for d in range(10)]
    return names == plain or names == [f"{d} - {w}" for d, w in zip(plain, _DIGIT_NAMES)]


def is_digit_dataset(dataset: str | None, classes: Sequence[str] | None = None) -> bool:
    """True for a dataset of handwritten digits: spec `digits`, `digits:SEED`, `mnist`, or digit classes."""
    name = (dataset or "").strip().lower().partition(":")[0]
    return name in DIGIT_DATASETS or is_digit_classes(classes)


def _turn(angle: float) -> float:
    """How far `angle` (degrees) is from upright, 0..180."""
    a = abs(float(angle)) % 360.0
    return min(a, 360.0 - a)


def _range(degrees) -> tuple[float, float]:
    if degrees is None:
        return 0.0, 0.0
    if isinstance(degrees, (list, tuple)):
        return float(degrees[0]), float(degrees[1])
    return -float(degrees), float(degrees)


def _largest_turn(lo: float, hi: float) -> float:
    if hi - lo >= 360.0:
        return 180.0
    return max(_turn(lo), _turn(hi), 180.0 if lo <= 180.0 <= hi or lo <= -180.0 <= hi else 0.0)


def _step_hazard(i: int, name: str, p: dict) -> LabelHazard | None:
    if name in ("RandomHorizontalFlip", "RandomVerticalFlip"):
        if p.get("p", 0.5) > 0:
            side = "left-right" if name == "RandomHorizontalFlip" else "top-bottom"
            return LabelHazard(i, name, f"mirrors {side}")
        return None
    if name == "RandomDiscreteRotation":
        turns = [a for a in p.get("angles", []) if _turn(a) >= LARGE_TURN]
        if turns:
            return LabelHazard(i, name, "turns by " + ", ".join(f"{a:g}" for a in turns) + " degrees")
        return None
    if name in ("RandomRotation", "RandomAffine"):
        lo, hi = _range(p.get("degrees"))
        if _largest_turn(lo, hi) >= LARGE_TURN:
            return LabelHazard(i, name, f"turns by up to {max(abs(lo), abs(hi)):g} degrees")
    return None


def label_hazards(pipeline: Pipeline | str, dataset: str | None, classes: Sequence[str] | None = None
                  ) -> list[LabelHazard]:
    """The steps of `pipeline` (a Pipeline, or a preset name / pipeline JSON) that can change the label
    of an image of `dataset`; [] for datasets without that risk or a pipeline that can't be read."""
    if not is_digit_dataset(dataset, classes):
        return []
    if isinstance(pipeline, str):
        try:
            pipeline = resolve(pipeline) if pipeline.strip() not in ("", "none") else Pipeline()
        except ValueError:
            return []
    out = []
    for i, step in enumerate(pipeline.steps, start=1):
        h = _step_hazard(i, step.name, step.params)
        if h is not None:
            out.append(h)
    return out


WHY = ("a mirrored or turned digit can be another digit or none (a 6 upside down is a 9, a mirrored 3 "
       "is no digit), so the picture no longer matches its label")


def hazard_line(pipeline: Pipeline | str, dataset: str | None, classes: Sequence[str] | None = None
                ) -> str | None:
    """One line for a page, or None: which steps can change a digit's label, and why."""
    found = label_hazards(pipeline, dataset, classes)
    if not found:
        return None
    steps = "; ".join(str(h) for h in found)
    return f"On handwritten digits {'this step' if len(found) == 1 else 'these steps'} can change the label: " \
           f"{steps}. Why: {WHY}."
