"""What one position's run did: :class:`PositionSummary`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PositionSummary"]


@dataclass
class PositionSummary:
    """Counts and time of one position's run."""

    key: str
    total: int = 0
    written: int = 0
    preview: int = 0
    skipped: int = 0
    resumed: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """Volumes not completed because the position failed or was cancelled."""
        return self.total - self.written - self.preview - self.skipped - self.resumed
