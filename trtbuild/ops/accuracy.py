"""``trtbuild accuracy``: the accuracy-gate reports of a project's reduced-precision models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trtbuild.manifest.target import Project
from trtbuild.results import report_problem


@dataclass
class AccuracyReports:
    """The gate reports found, by model.

    Attributes:
        reports: model -> its report (``reports/<name>.accuracy.json``), for the reports that read well.
        damaged: one line per report that cannot be read or has the wrong shape; never shown as figures
            (the gate's key records the report's sha256, so the next run redoes it).
    """

    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every report reads well and says pass."""
        return not self.damaged and all(report["passed"] for report in self.reports.values())


def accuracy(project: Project) -> AccuracyReports:
    """Read every model's accuracy report that exists (a model never gated has none)."""
    found = AccuracyReports()
    for name, target in project.models.items():
        if not target.report.is_file():
            continue
        try:
            report = json.loads(target.report.read_text())
            problem = report_problem(report)
        except (OSError, ValueError) as exc:
            problem = str(exc)
        if problem is None:
            found.reports[name] = report
        else:
            found.damaged.append(
                f"{project.relative(target.report)}: damaged report ({problem}); "
                f"`trtbuild build {name}` runs the gate again"
            )
    return found
