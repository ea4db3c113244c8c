from .runner import Worker, WorkerStats

__all__ = ["Worker", "WorkerStats"]
