"""Background tasks with QStash in a FastAPI app; runs unchanged against Homing."""
